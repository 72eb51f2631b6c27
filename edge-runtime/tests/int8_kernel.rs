//! The edge runtime's integer convolutions against tract's own int8 handling of the same
//! file (the shipped int8 model), on the fixture's images. Needs only tract and files in
//! the repository, so it also runs on aarch64 under QEMU, where the arm64 tiles run
//! instead of AVX-512 VNNI: `smull` on `-cpu cortex-a72`, `sdot` on `-cpu
//! cortex-a76` (scripts/test.sh runs both).
use std::path::Path;

use std::collections::BTreeMap;

use edge_runtime::{Engine, Int8Kernel, LoadOptions};
use hydranet_fixture::{case_outputs, Fixture};
use models::decode::decode;

fn labels(e: &Engine, raw: &[Vec<f32>]) -> BTreeMap<String, String> {
    let rows: Vec<&[f32]> = raw.iter().map(Vec::as_slice).collect();
    let c = e.contract();
    case_outputs(c, raw, &decode(&c.heads, &rows).unwrap()).1
}

#[test]
fn integer_convolutions_answer_like_tracts_own_int8() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/utkface/hydranet-utkface-int8.onnx");
    let load = |k| Engine::load_with(&model, 1, LoadOptions { int8_kernel: k }).unwrap();
    let (edge, own) = (load(Int8Kernel::Edge), load(Int8Kernel::Tract));
    assert_eq!(edge.fused().convolutions, 24, "{:?}", edge.fused());
    assert_eq!(own.fused(), Default::default());
    let fx = Fixture::load().unwrap();
    let inputs = fx.inputs(edge.contract()).unwrap();
    let (mut worst, mut same) = (0f32, 0);
    for x in &inputs {
        let one = |e: &Engine| -> Vec<Vec<f32>> {
            e.run_raw(x)
                .unwrap()
                .into_iter()
                .map(|mut h| h.remove(0))
                .collect()
        };
        let (a, b) = (one(&edge), one(&own));
        for (u, v) in a.iter().flatten().zip(b.iter().flatten()) {
            worst = worst.max((u - v).abs());
        }
        same += usize::from(labels(&edge, &a) == labels(&own, &b));
    }
    eprintln!(
        "{} fixture images on {} ({:?} tile): worst |edge - tract| raw output {worst:.2e}, labels identical on {same}",
        inputs.len(),
        std::env::consts::ARCH,
        edge_runtime::qconv::Tile::chosen().unwrap(),
    );
    assert_eq!(same, inputs.len());
    // Exact int32 sums against tract's float sums of the same codes: they differ by float
    // rounding, and where an activation lands on the other side of a rounding boundary it
    // moves by one code. The smallest quantization step of any output of this file (one
    // code of every hidden unit of a head, `scale(heads.<h>.relu) · Σ|W2|`) is 0.110
    // (age, in units of 20 years); the two must stay within half of it.
    assert!(worst < 0.054, "worst raw difference {worst}");
}
