//! The Mersenne Twister (MT19937, Matsumoto & Nishimura 1998) — the generator behind `torch.manual_seed` on
//! the CPU. DARE and DELLA draw from it exactly as torch's CPU `bernoulli` does (one 32-bit word per element,
//! `u = (w & 0xFFFFFF)·2⁻²⁴`, kept when `u < p`), so a seeded merge reproduces `mergekit-yaml --random-seed`.

/// MT19937 with `init_genrand` seeding.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform f32 in [0, 1) with 24 random bits, as torch's CPU bernoulli forms it.
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00FF_FFFF) as f32 * (1.0 / 16_777_216.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs() {
        // The first outputs of the reference implementation (mt19937ar.c) for seed 5489, and numpy's
        // RandomState(42).randint(0, 2**32) stream.
        let mut m = Mt19937::new(5489);
        assert_eq!(
            [m.next_u32(), m.next_u32(), m.next_u32()],
            [3_499_211_612, 581_869_302, 3_890_346_734]
        );
        let mut m = Mt19937::new(42);
        assert_eq!(m.next_u32(), 1_608_637_542);
    }
}
