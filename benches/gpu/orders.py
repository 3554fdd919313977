"""Which cuBLAS order a benchmark row really ran, for table.py and gemm_table.py."""


def fell_back(label, row):
    """Whether a row relabelled for a non-host cuBLAS order (run.sh: cublas-stream, -devorder, -wait, …) counts
    products under the host order (`cublas_orders`: products per order the process made up to that row): it
    fell back (stderr said why), and its figures are the host order's."""
    asked = any(w in label for w in ("stream", "devorder", "wait"))
    return asked and row.get("cublas_orders", {}).get("host", 0) > 0
