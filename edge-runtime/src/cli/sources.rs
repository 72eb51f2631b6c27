//! `edge-runtime sources`: the cameras this board has and what each offers.
use std::process::ExitCode;

use anyhow::Result;

/// Arguments of `sources`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[cfg(target_os = "linux")]
pub fn run(a: Args) -> Result<ExitCode> {
    let cameras = edge_runtime::source::v4l::list_cameras();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cameras)?);
        return Ok(ExitCode::SUCCESS);
    }
    if cameras.is_empty() {
        println!("no V4L2 devices (/dev/video*) found");
    }
    for c in &cameras {
        let kind = if c.capture { "capture" } else { "no capture" };
        println!(
            "{}  {} [{}, {}] {kind}",
            c.path.display(),
            c.card,
            c.driver,
            c.bus
        );
        if let Some(e) = &c.error {
            println!("    cannot inspect: {e}");
        }
        for f in &c.formats {
            let note = if f.supported {
                ""
            } else {
                "  (not supported here)"
            };
            println!("    {} {}{note}", f.fourcc, f.description);
            if !f.sizes.is_empty() {
                println!("        {}", f.sizes.join(", "));
            }
        }
    }
    println!("other sources: dir:PATH (stills), seq:PATH (image sequence), pattern");
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_: Args) -> Result<ExitCode> {
    println!("no V4L2 on this system; other sources: dir:PATH, seq:PATH, pattern");
    Ok(ExitCode::SUCCESS)
}
