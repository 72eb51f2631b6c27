//! A procedural face-like data set with UTKFace file names, so the quick start trains on a
//! fresh machine without a download. The attributes are drawn so a network can learn them:
//! skin and hair tone follow the ethnicity label, hair length and lip colour follow gender,
//! eye size, face shape, grey hair and forehead lines follow age. It proves the pipeline
//! works; it says nothing about real faces.
use std::path::Path;

use image::{codecs::jpeg::JpegEncoder, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

const SKIN: [[f32; 3]; 5] = [
    [232.0, 196.0, 172.0], // White
    [105.0, 70.0, 50.0],   // Black
    [226.0, 192.0, 146.0], // Asian
    [170.0, 120.0, 85.0],  // Indian
    [196.0, 150.0, 112.0], // Others
];

fn lerp(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

fn inside(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> bool {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy <= 1.0
}

/// Draws one face of the given attributes.
pub fn render(age: u8, gender: u8, ethnicity: u8, size: u32, rng: &mut impl Rng) -> RgbImage {
    let s = size as f32;
    let a = (age as f32 - 1.0) / 90.0;
    let child = age < 13;
    let bg = [
        rng.random_range(40.0..220.0),
        rng.random_range(40.0..220.0),
        rng.random_range(40.0..220.0),
    ];
    let skin = SKIN[ethnicity as usize % 5].map(|c| c + rng.random_range(-12.0..12.0));
    let base_hair = if ethnicity == 0 && rng.random_bool(0.4) {
        [150.0, 110.0, 60.0]
    } else {
        [35.0, 28.0, 22.0]
    };
    let grey = ((age as f32 - 35.0) / 45.0).clamp(0.0, 1.0);
    let hair = lerp(base_hair, [205.0, 205.0, 205.0], grey);
    let lips = if gender == 1 {
        [190.0, 60.0, 80.0]
    } else {
        lerp(skin, [120.0, 60.0, 50.0], 0.4)
    };
    let (cx, cy) = (
        s / 2.0 + rng.random_range(-0.03..0.03) * s,
        s * 0.53 + rng.random_range(-0.03..0.03) * s,
    );
    let ry = s * 0.34;
    let rx = ry * if child { 0.92 } else { 0.80 - 0.06 * a };
    let eye_r = s * (0.05 - 0.022 * a.min(1.0));
    let eye_y = cy - ry * if child { 0.02 } else { 0.15 };
    let lines = ((age as i32 - 30) / 12).clamp(0, 5);
    let light = rng.random_range(-0.25..0.25f32);
    let mut img = RgbImage::new(size, size);
    for (px, py, p) in img.enumerate_pixels_mut() {
        let (x, y) = (px as f32 + 0.5, py as f32 + 0.5);
        let mut c = bg;
        let long_hair = gender == 1
            && inside(x, y, cx, cy + ry * 0.35, rx * 1.35, ry * 1.15)
            && y > cy - ry * 0.2;
        if long_hair || inside(x, y, cx, cy - ry * 0.25, rx * 1.12, ry * 0.9) {
            c = hair;
        }
        if inside(x, y, cx, cy + ry * 0.08, rx, ry * 0.92) {
            c = skin;
            let fy = (y - (cy - ry * 0.75)) / (ry * 0.4);
            if (0.0..1.0).contains(&fy) && lines > 0 {
                let band = fy * (lines as f32 * 2.0);
                if band.fract() < 0.18 && (x - cx).abs() < rx * 0.55 {
                    c = lerp(skin, [60.0, 40.0, 30.0], 0.35);
                }
            }
            for ex in [cx - rx * 0.4, cx + rx * 0.4] {
                if inside(x, y, ex, eye_y, eye_r * 1.6, eye_r) {
                    c = [245.0, 245.0, 245.0];
                }
                if inside(x, y, ex, eye_y, eye_r * 0.7, eye_r * 0.7) {
                    c = [30.0, 25.0, 20.0];
                }
            }
            if inside(x, y, cx, cy + ry * 0.5, rx * 0.32, ry * 0.06) {
                c = lips;
            }
        }
        let shade = 1.0 + light * (x - cx) / s;
        let n = rng.random_range(-6.0..6.0f32);
        *p = Rgb(c.map(|v| (v * shade + n).clamp(0.0, 255.0) as u8));
    }
    img
}

/// Writes `count` images named `age_gender_race_date.jpg.chip.jpg` into `out`.
pub fn generate(out: &Path, count: usize, size: u32, seed: u64) -> Result<()> {
    let io = |source| Error::Io {
        path: out.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..count {
        // Ages skewed towards adults, as in UTKFace.
        let age = (1.0 + 89.0 * rng.random::<f32>().powf(1.3)).round() as u8;
        let gender = rng.random_range(0..2u8);
        let ethnicity = rng.random_range(0..5u8);
        let img = render(age, gender, ethnicity, size, &mut rng);
        let path = out.join(format!(
            "{age}_{gender}_{ethnicity}_{}.jpg.chip.jpg",
            20170101000000000u64 + i as u64
        ));
        let file = std::fs::File::create(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
            .encode_image(&img)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_parseable_names_and_decodable_images() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), 6, 48, 1).unwrap();
        let scan =
            models::dataset::scan_utkface_dir(dir.path(), &models::heads::utkface_heads()).unwrap();
        assert_eq!(scan.samples.len(), 6);
        assert!(scan.rejected.is_empty());
        for s in &scan.samples {
            let img = models::dataset::load_image(&s.path).unwrap();
            assert_eq!((img.width(), img.height()), (48, 48));
        }
    }
}
