"""Which cuBLAS order a benchmark row really ran, for table.py and gemm_table.py."""


def fell_back(label, row):
    """Whether a row asked for a cuBLAS order other than the host order and counts products under the host
    order (`cublas_orders`: products per order the process made up to that row): it fell back (stderr said
    why), and its figures are the host order's.

    What the row asked for is its `cublas_order` field (since run 8's binaries, whose default is the stream
    order); rows without it (runs up to 8, whose default was the host order) asked for another order only
    where run.sh relabelled them so (cublas-stream, -devorder, -wait, …)."""
    if "cublas_order" in row:
        asked = row["cublas_order"] != "host"
    else:
        asked = any(w in label for w in ("stream", "devorder", "wait"))
    return asked and row.get("cublas_orders", {}).get("host", 0) > 0
