//! The inner loop of the integer convolution, one per instruction set, chosen at run time.
//!
//! Every tile computes the same thing: for `NR` output pixels and one packed block of `MB`
//! output channels, the exact int32 sums `Σ_k x[j][k] · w[k][lane]`, where pixel `j`'s
//! `k` values are its patch read in place from the padded NHWC input ([`Window`]): no patch
//! matrix is built (it was a quarter of an int8 run, copying and memmove, on the VNNI
//! Xeon). They differ in what they ask of the input. x86's `vpdpbusd` multiplies u8 by i8,
//! so its input holds the quantized codes as they are. arm64's `sdot` and `smull` multiply
//! i8 by i8, so theirs holds `q - 128` (the codes with the top bit flipped, done once per
//! layer), and the epilogue adds `128 · Σ w` back through the zero-point term.
//!
//! Packed weights are `[k / 4][MB][4]` per block for every tile: 4 consecutive `k` of one
//! channel form one 32-bit lane, which is what `vpdpbusd` and an indexed `sdot` consume and
//! what `smull` + `sadalp` reduce pairwise. The AVX2 tile is the exception ([`Dot::Wide`]):
//! it multiplies int16 by int16, so it takes u16 codes and its own `[k / 2][MB][2]` i16
//! packing ([`widen`]), both made before the inner loop instead of inside it.

/// Output channels per weight block.
pub const MB: usize = 32;
/// Output pixels per tile.
pub const NR: usize = 12;

/// The int32 sums of one tile: `NR` pixels × `MB` channels.
pub type Acc = [[i32; MB]; NR];

/// Where every output pixel's patch lies in the padded NHWC input: pixel `p`'s `k` values
/// are, tap by tap, the `run` consecutive codes from `input[starts[p] + taps[t]]` (`run` =
/// the channels padded to 4, so `k = taps.len() · run`). A patch matrix is the special case
/// of one tap of `run = k` with `starts[p] = p · k`.
///
/// [`Patches::new`] checks once per image that every read stays inside `input`: what each
/// tile's `unsafe` loop relies on. Checking it per tile was 1 % of a run.
pub struct Patches<'a, T> {
    input: &'a [T],
    starts: &'a [usize],
    taps: &'a [usize],
    run: usize,
}

impl<'a, T> Patches<'a, T> {
    /// # Panics
    /// If a patch would read past `input`, `run` is not a multiple of 4, or `starts` is not
    /// `NR`-padded.
    pub fn new(input: &'a [T], starts: &'a [usize], taps: &'a [usize], run: usize) -> Self {
        let far = starts.iter().max().copied().unwrap_or(0)
            + taps.iter().max().copied().unwrap_or(0)
            + run;
        assert!(
            run.is_multiple_of(4) && starts.len().is_multiple_of(NR) && far <= input.len(),
            "patches read past the input"
        );
        Self {
            input,
            starts,
            taps,
            run,
        }
    }

    /// The tile of pixels `p0..p0 + NR`.
    pub fn window(&self, p0: usize) -> Window<'_, T> {
        Window {
            input: self.input,
            pixels: &self.starts[p0..p0 + NR],
            taps: self.taps,
            run: self.run,
        }
    }
}

/// The `NR` patches of one tile, made only by [`Patches::window`], so every read it
/// describes is inside `input`.
pub struct Window<'a, T> {
    input: &'a [T],
    pixels: &'a [usize],
    taps: &'a [usize],
    run: usize,
}

impl<T> Window<'_, T> {
    pub fn input(&self) -> &[T] {
        self.input
    }

    /// Where each of the `NR` patches starts in [`Self::input`].
    pub fn pixels(&self) -> &[usize] {
        self.pixels
    }

    /// Where each tap starts, from a patch's start.
    pub fn taps(&self) -> &[usize] {
        self.taps
    }

    /// Codes per tap.
    pub fn run(&self) -> usize {
        self.run
    }

    /// `k`, after checking that `w` holds a block of `MB · k` weights.
    pub fn check<W>(&self, w: &[W]) -> usize {
        let k = self.taps.len() * self.run;
        assert!(w.len() >= MB * k, "a weight block of {} for k {k}", w.len());
        k
    }
}

/// The inner loop, by the operand form it takes.
#[derive(Clone, Copy)]
pub enum Dot {
    /// `tile[j][lane] = Σ_k x[j][kk] · w[kk/4][lane][kk%4]`, byte codes and the shared
    /// `[k / 4][MB][4]` i8 packing.
    Bytes(fn(&Window<u8>, &[i8], &mut Acc)),
    /// The same sums from u16 codes and the `[k / 2][MB][2]` i16 packing of [`widen`].
    Wide(fn(&Window<u16>, &[i16], &mut Acc)),
}

/// One block's `[k / 4][MB][4]` i8 weights as the `[k / 2][MB][2]` i16 pairs of
/// [`Dot::Wide`]: each 32-bit lane then holds one channel's two consecutive `k`, which is
/// what `vpmaddwd` against a broadcast input pair sums into that channel's int32.
pub fn widen(block: &[i8], k: usize) -> Vec<i16> {
    let mut out = vec![0i16; MB * k];
    for kk in 0..k {
        for lane in 0..MB {
            out[(kk / 2 * MB + lane) * 2 + kk % 2] =
                block[(kk / 4 * MB + lane) * 4 + kk % 4] as i16;
        }
    }
    out
}

/// One implementation of the inner loop.
#[derive(Clone, Copy)]
pub struct Tile {
    pub name: &'static str,
    /// Rows hold `q - 128` as i8 bytes instead of the u8 codes.
    pub signed: bool,
    pub dot: Dot,
    /// Multiply-adds per image below which a layer runs on one thread: splitting it costs
    /// a wake-up of tract's pool (tens of microseconds on the 2-core host here, where
    /// `edge-runtime kernels` saw the VNNI tile's small layers run 2-3x slower on two
    /// threads), so only layers of ~50 µs or more on this tile are split. From each
    /// tile's speed: VNNI ~150 MACs/ns and AVX2 ~15 (measured), `sdot` 32 MACs/cycle and
    /// `smull` 7 (llvm-mca, docs/measurements.md) at 1.5-2.4 GHz, the portable loop ~1-3
    /// per ns.
    pub par_min_macs: usize,
}

impl std::fmt::Debug for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The environment variable that forces a tile (for side-by-side measurements on a board).
pub const TILE_ENV: &str = "HYDRANET_INT8_TILE";

/// Why a tile cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{TILE_ENV}={name}: not a tile this CPU runs (it runs: {available})")]
pub struct UnknownTile {
    pub name: String,
    pub available: String,
}

impl Tile {
    pub const PORTABLE: Tile = Tile {
        name: "portable",
        signed: false,
        dot: Dot::Bytes(portable),
        par_min_macs: 1 << 18,
    };

    /// Every tile this CPU can run, fastest first; the portable loop is always last.
    pub fn available() -> Vec<Tile> {
        let mut tiles = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if super::vnni::available() {
            tiles.push(Tile {
                name: "vnni",
                signed: false,
                dot: Dot::Bytes(super::vnni::dot_tile),
                par_min_macs: 8 << 20,
            });
        }
        #[cfg(target_arch = "x86_64")]
        if super::avx2::available() {
            tiles.push(Tile {
                name: "avx2",
                signed: false,
                dot: Dot::Wide(super::avx2::dot_tile),
                par_min_macs: 1 << 20,
            });
        }
        #[cfg(target_arch = "aarch64")]
        {
            if super::arm64::dotprod_available() {
                tiles.push(Tile {
                    name: "sdot",
                    signed: true,
                    dot: Dot::Bytes(super::arm64::sdot_tile),
                    par_min_macs: 4 << 20,
                });
            }
            tiles.push(Tile {
                name: "smull",
                signed: true,
                dot: Dot::Bytes(super::arm64::smull_tile),
                par_min_macs: 1 << 20,
            });
        }
        tiles.push(Tile::PORTABLE);
        tiles
    }

    /// The tile named by `HYDRANET_INT8_TILE`, or the fastest this CPU runs.
    pub fn chosen() -> Result<Tile, UnknownTile> {
        let tiles = Self::available();
        match std::env::var(TILE_ENV) {
            Ok(name) if !name.is_empty() => tiles
                .iter()
                .copied()
                .find(|t| t.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = tiles.iter().map(|t| t.name).collect();
                    UnknownTile {
                        name,
                        available: names.join(", "),
                    }
                }),
            _ => Ok(tiles[0]),
        }
    }
}

/// Plain Rust that LLVM vectorises for whatever the target has (on arm64 without the tiles
/// above: `sxtl` + `smlal`). The reference for every other tile.
fn portable(win: &Window<u8>, w: &[i8], tile: &mut Acc) {
    win.check(w);
    for (&p, acc) in win.pixels().iter().zip(tile.iter_mut()) {
        *acc = [0; MB];
        let mut steps = w.chunks_exact(4 * MB);
        for &t in win.taps() {
            let run = &win.input()[p + t..p + t + win.run()];
            for (x4, w4) in run.chunks_exact(4).zip(&mut steps) {
                for (t, &xv) in x4.iter().enumerate() {
                    let xv = xv as i32;
                    for (lane, a) in acc.iter_mut().enumerate() {
                        *a += xv * w4[lane * 4 + t] as i32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// Runs `tile` on `NR` patches of `k` codes in `rows` (a window of one tap), handing a
    /// signed tile the codes it expects and undoing its offset, so every tile answers in
    /// the portable tile's terms.
    fn run(tile: Tile, rows: &[u8], w: &[i8], k: usize) -> Acc {
        let pixels: Vec<usize> = (0..NR).map(|j| j * k).collect();
        run_window(tile, rows, &pixels, &[0], k, w)
    }

    /// Runs `tile` on the window `pixels`/`taps`/`run` over `input`, in the portable
    /// tile's terms (see [`run`]).
    pub fn run_window(
        tile: Tile,
        input: &[u8],
        pixels: &[usize],
        taps: &[usize],
        run: usize,
        w: &[i8],
    ) -> Acc {
        let k = taps.len() * run;
        let mut out = [[0; MB]; NR];
        let dot = |input: &[u8], out: &mut Acc| match tile.dot {
            Dot::Bytes(f) => f(&Patches::new(input, pixels, taps, run).window(0), w, out),
            Dot::Wide(f) => {
                let input: Vec<u16> = input.iter().map(|&b| b as u16).collect();
                let patches = Patches::new(&input[..], pixels, taps, run);
                f(&patches.window(0), &widen(w, k), out)
            }
        };
        if tile.signed {
            let flipped: Vec<u8> = input.iter().map(|b| b ^ 0x80).collect();
            dot(&flipped, &mut out);
            for acc in &mut out {
                for (lane, a) in acc.iter_mut().enumerate() {
                    let wsum: i32 = (0..k)
                        .map(|kk| w[(kk / 4 * MB + lane) * 4 + kk % 4] as i32)
                        .sum();
                    *a += 128 * wsum;
                }
            }
        } else {
            dot(input, &mut out);
        }
        out
    }

    /// Patches read in place: several taps, runs of 4 to 64 codes, pixels anywhere in the
    /// input (overlapping, repeated, out of order), as the convolution hands them over.
    #[test]
    fn every_tile_agrees_with_the_portable_one_on_windows() {
        let tiles = Tile::available();
        for (ntaps, run) in [(1, 4), (49, 4), (9, 16), (9, 32), (9, 64), (1, 64), (4, 12)] {
            let mut s = (ntaps * 1000 + run) as u64;
            let taps: Vec<usize> = (0..ntaps).map(|t| t * run + (t / 3) * 7 * run).collect();
            let span = taps.last().unwrap() + run;
            let len = span + 40 * run;
            let input: Vec<u8> = (0..len).map(|_| lcg(&mut s) as u8).collect();
            let pixels: Vec<usize> = (0..NR)
                .map(|j| {
                    if j == 7 {
                        0
                    } else {
                        (lcg(&mut s) as usize % 40) * run
                    }
                })
                .collect();
            let k = ntaps * run;
            let w: Vec<i8> = (0..MB * k).map(|_| lcg(&mut s) as u8 as i8).collect();
            let want = run_window(Tile::PORTABLE, &input, &pixels, &taps, run, &w);
            for &t in &tiles {
                let got = run_window(t, &input, &pixels, &taps, run, &w);
                assert_eq!(got, want, "tile {} at {ntaps} taps of {run}", t.name);
            }
        }
    }

    #[test]
    fn every_tile_agrees_with_the_portable_one_exactly() {
        let tiles = Tile::available();
        eprintln!("tiles on {}: {tiles:?}", std::env::consts::ARCH);
        // k = 4 (a 1x1 over 4 channels), 36 (3x3 over 4), 196 (the 7x7 stem: not a multiple
        // of 16), 144, 288, 576, 1152 (3x3 over 16..128), plus the extremes.
        for k in [4, 8, 12, 36, 144, 196, 288, 576, 1152] {
            let mut s = k as u64;
            let rows: Vec<u8> = (0..NR * k).map(|_| lcg(&mut s) as u8).collect();
            let w: Vec<i8> = (0..MB * k).map(|_| lcg(&mut s) as u8 as i8).collect();
            let want = run(Tile::PORTABLE, &rows, &w, k);
            for &t in &tiles {
                assert_eq!(run(t, &rows, &w, k), want, "tile {} at k {k}", t.name);
            }
            for (x, wv) in [
                (255u8, -128i8),
                (0, -128),
                (255, 127),
                (0, 127),
                (128, -128),
            ] {
                let rows = vec![x; NR * k];
                let w = vec![wv; MB * k];
                let want = run(Tile::PORTABLE, &rows, &w, k);
                assert_eq!(want[0][0], x as i32 * wv as i32 * k as i32);
                for &t in &tiles {
                    assert_eq!(
                        run(t, &rows, &w, k),
                        want,
                        "tile {} at k {k}, {x}·{wv}",
                        t.name
                    );
                }
            }
        }
    }

    /// `HYDRANET_EXPECT_TILES=sdot,smull` makes the run fail unless those tiles are the ones
    /// this CPU runs: scripts/test.sh sets it for each emulated CPU, so a QEMU run that
    /// silently fell back to another tile cannot pass as a test of the one it meant.
    #[test]
    fn the_tiles_this_run_expects_are_the_ones_that_run() {
        let Ok(want) = std::env::var("HYDRANET_EXPECT_TILES") else {
            return;
        };
        let have: Vec<&str> = Tile::available().iter().map(|t| t.name).collect();
        for name in want.split(',').filter(|n| !n.is_empty()) {
            assert!(
                have.contains(&name),
                "expected tile {name}, this CPU runs {have:?}"
            );
        }
        if std::env::var_os(TILE_ENV).is_none() {
            assert_eq!(Tile::chosen().map(|t| t.name).ok(), have.first().copied());
        }
    }
}
