//! What is drawn on the streamed frames.
use models::{detect::BoxF, Region};

/// A face's box as whole pixels inside a `width x height` frame (`None`: nothing of it is).
pub fn box_region(b: &BoxF, width: u32, height: u32) -> Option<Region> {
    if ![b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (x0, y0) = (b.x.max(0.0), b.y.max(0.0));
    let (x1, y1) = (
        (b.x + b.w).min(width as f32),
        (b.y + b.h).min(height as f32),
    );
    if !(x1 - x0 >= 1.0 && y1 - y0 >= 1.0) {
        return None;
    }
    Some(Region {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// Draws the guide box: a 3-pixel green frame with dark edges, visible on any background.
pub fn draw_box(rgb: &mut [u8], width: u32, height: u32, r: Region) {
    let (w, h) = (width as i64, height as i64);
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = ((y * w + x) * 3) as usize;
            if let Some(px) = rgb.get_mut(i..i + 3) {
                px.copy_from_slice(&c);
            }
        }
    };
    let (x0, y0) = (r.x as i64, r.y as i64);
    let (x1, y1) = (x0 + r.width as i64 - 1, y0 + r.height as i64 - 1);
    for t in -2..=2i64 {
        let c = if t.abs() == 2 {
            [0, 40, 0]
        } else {
            [60, 230, 90]
        };
        for x in x0 - 2..=x1 + 2 {
            put(x, y0 + t, c);
            put(x, y1 + t, c);
        }
        for y in y0 - 2..=y1 + 2 {
            put(x0 + t, y, c);
            put(x1 + t, y, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_is_drawn_inside_the_frame_only() {
        let (w, h) = (20u32, 10u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let r = Region {
            x: 0,
            y: 0,
            width: 20,
            height: 10,
        };
        draw_box(&mut rgb, w, h, r);
        assert_eq!(&rgb[0..3], &[60, 230, 90], "corner on the line");
        let centre = ((5 * w + 10) * 3) as usize;
        assert_eq!(&rgb[centre..centre + 3], &[0, 0, 0], "inside untouched");
    }

    #[test]
    fn face_boxes_are_clipped_to_the_frame() {
        let b = |x, y, w, h| BoxF { x, y, w, h };
        assert_eq!(
            box_region(&b(-5.0, 2.0, 20.0, 5.0), 10, 10),
            Some(Region {
                x: 0,
                y: 2,
                width: 10,
                height: 5
            })
        );
        assert_eq!(box_region(&b(20.0, 2.0, 5.0, 5.0), 10, 10), None);
        assert_eq!(box_region(&b(f32::NAN, 2.0, 5.0, 5.0), 10, 10), None);
    }
}
