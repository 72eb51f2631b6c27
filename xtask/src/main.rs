//! `cargo xtask`: see boards/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Parser, Subcommand};

use xtask::board::{Board, Libc};
use xtask::bundle::{self, Bundle, BundleSpec};
use xtask::flash::{self, Ssh};
use xtask::util::mib;
use xtask::{build, workspace_root};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Board tasks: cross-build edge-runtime, bundle a release, flash it"
)]
struct Cli {
    /// Folder of board profiles [default: boards/ in the workspace].
    #[arg(long, global = true, value_name = "DIR")]
    boards_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the board profiles.
    Boards,
    /// Cross-build edge-runtime for a board (its target CPU, static musl by default).
    Build(BuildOpts),
    /// Make a release tarball: binary, model, systemd unit, install.sh, manifest.json (and
    /// the kiosk's browser autostart when the profile turns the kiosk on).
    Bundle(BundleArgs),
    /// Install a bundle into a board's root file system or on a board over ssh.
    Flash(FlashArgs),
}

#[derive(Args)]
struct BuildOpts {
    /// Board profile name (`cargo xtask boards`).
    #[arg(long)]
    board: String,
    /// libc of the binary [default: the profile's targets.default].
    #[arg(long, value_enum)]
    libc: Option<Libc>,
    /// Cargo profile.
    #[arg(long, default_value = "release")]
    profile: String,
}

#[derive(Args)]
struct BundleArgs {
    #[command(flatten)]
    build: BuildOpts,
    /// The ONNX model to ship (exported by host-train) [default: the shipped fp32 model,
    /// models/utkface/hydranet-utkface.onnx].
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// The face detector to ship [default: BlazeFace back-256, which
    /// scripts/fetch-detector.sh fetches (and this runs) into models/blazeface/]; its
    /// licence must be a LICENSE file beside it.
    #[arg(long, value_name = "FILE", conflicts_with = "no_detector")]
    detector: Option<PathBuf>,
    /// Ship no face detector: the board reads the guide box.
    #[arg(long)]
    no_detector: bool,
    /// A prebuilt edge-runtime for this board; without it, `build` runs first.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Output folder [default: <target dir>/bundles].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Release version [default: workspace version + git hash, e.g. 0.1.0+g823cbb8].
    #[arg(long = "version", value_name = "V")]
    release_version: Option<String>,
    /// Accept a binary that is not an aarch64 ELF (for tests of the layout).
    #[arg(long)]
    skip_arch_check: bool,
    /// What to write: the tarball (for `flash`), or also a Mender artifact holding it
    /// (for `mender install`, or a Mender server), for the profile's [mender] device type.
    #[arg(long, value_enum, default_value_t = Format::Tarball)]
    format: Format,
    /// Sign the Mender artifact with this private key (PEM: RSA, or ECDSA P-256 as
    /// `openssl ecparam -genkey -name prime256v1 -noout` writes it); boards
    /// holding the public key refuse unsigned and wrongly signed artifacts.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Tarball,
    Mender,
}

#[derive(Args)]
#[command(group(ArgGroup::new("dest").required(true).args(["rootfs", "ssh"])))]
struct FlashArgs {
    /// Board profile name; the bundle must have been made for it.
    #[arg(long)]
    board: String,
    /// The bundle (.tar.gz) to install.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    bundle: Option<PathBuf>,
    /// Install into this folder, the board's root file system (mounted or unpacked).
    #[arg(long, value_name = "PATH")]
    rootfs: Option<PathBuf>,
    /// Install on a running board: scp, then install.sh as root there.
    #[arg(long, value_name = "USER@HOST")]
    ssh: Option<String>,
    /// ssh port of the board.
    #[arg(long, value_name = "PORT", requires = "ssh")]
    ssh_port: Option<u16>,
    /// With --ssh: install below this folder on the board instead of / (systemd untouched).
    #[arg(long, value_name = "DIR", requires = "ssh")]
    remote_root: Option<String>,
    /// Make the previous release current again (no bundle needed).
    #[arg(long)]
    rollback: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let boards_dir = cli
        .boards_dir
        .unwrap_or_else(|| workspace_root().join("boards"));
    match cli.cmd {
        Cmd::Boards => list_boards(&boards_dir),
        Cmd::Build(opts) => {
            let board = Board::find(&boards_dir, &opts.board)?;
            let exe = build_binary(&board, &opts)?;
            print_binary(&exe)
        }
        Cmd::Bundle(args) => make_bundle(&boards_dir, args),
        Cmd::Flash(args) => flash(&boards_dir, args),
    }
}

fn list_boards(dir: &std::path::Path) -> Result<()> {
    let boards = Board::list(dir)?;
    println!(
        "{:<18} {:<13} {:<28} camera; kiosk",
        "board", "cpu", "default target"
    );
    for b in boards {
        let c = &b.camera;
        let k = &b.kiosk;
        let kiosk = if k.enabled {
            format!("kiosk {} on {} ({})", k.display, k.listen_addr(), k.browser)
        } else {
            "kiosk off".into()
        };
        println!(
            "{:<18} {:<13} {:<28} {} {} {}x{}@{} ({}); {kiosk}",
            b.name,
            b.target_cpu,
            b.target(b.targets.default),
            c.device,
            c.format,
            c.width,
            c.height,
            c.fps,
            c.path
        );
    }
    Ok(())
}

fn build_binary(board: &Board, opts: &BuildOpts) -> Result<PathBuf> {
    let libc = opts.libc.unwrap_or(board.targets.default);
    Ok(build::build(board, libc, &opts.profile, &workspace_root())?)
}

fn print_binary(exe: &std::path::Path) -> Result<()> {
    let bytes = std::fs::metadata(exe)
        .with_context(|| format!("reading {}", exe.display()))?
        .len();
    println!("{}", exe.display());
    println!("{bytes} bytes ({:.2} MiB)", mib(bytes));
    Ok(())
}

fn make_bundle(boards_dir: &std::path::Path, args: BundleArgs) -> Result<()> {
    let board = Board::find(boards_dir, &args.build.board)?;
    if args.sign_key.is_some() && args.format != Format::Mender {
        bail!("--sign-key signs Mender artifacts: add --format mender");
    }
    if args.format == Format::Mender && board.mender.is_none() {
        bail!(
            "board `{}` has no [mender] section (device_type) in its profile: add one to make \
             Mender artifacts (boards/README.md)",
            board.name
        );
    }
    let libc = args.build.libc.unwrap_or(board.targets.default);
    let binary = match &args.binary {
        Some(p) => p.clone(),
        None => build_binary(&board, &args.build)?,
    };
    let workspace = workspace_root();
    let out = args.out.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace.join("target"), PathBuf::from)
            .join("bundles")
    });
    let version = args
        .release_version
        .clone()
        .unwrap_or_else(|| bundle::default_version(&workspace));
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| workspace.join("models/utkface/hydranet-utkface.onnx"));
    let detector = if args.no_detector {
        None
    } else {
        let file = match &args.detector {
            Some(f) => f.clone(),
            None => {
                let script = workspace.join("scripts/fetch-detector.sh");
                let status = std::process::Command::new(&script)
                    .status()
                    .with_context(|| format!("running {}", script.display()))?;
                anyhow::ensure!(status.success(), "{} failed", script.display());
                workspace.join("models/blazeface/face_detection_back_256x256_barracuda.onnx")
            }
        };
        let licence = file.with_file_name("LICENSE");
        anyhow::ensure!(
            licence.is_file(),
            "the detector {} has no LICENSE beside it ({}); a release ships both",
            file.display(),
            licence.display()
        );
        Some((file, licence))
    };
    let created = bundle::create(&BundleSpec {
        board: &board,
        libc,
        binary: &binary,
        model: &model,
        detector: detector.as_ref().map(|(f, l)| (f.as_path(), l.as_path())),
        out_dir: &out,
        version: &version,
        created_unix: created_unix()?,
        skip_arch_check: args.skip_arch_check,
    })?;
    let m = &created.manifest;
    println!("{}", created.tarball.display());
    if args.format == Format::Mender {
        let artifact = bundle::mender::write_artifact(
            &board,
            &m.version,
            &created.tarball,
            args.sign_key.as_deref(),
        )?;
        let bytes = std::fs::metadata(&artifact)
            .with_context(|| format!("reading {}", artifact.display()))?
            .len();
        println!("{}", artifact.display());
        println!(
            "artifact: {bytes} bytes ({:.2} MiB), device type {}, {}",
            mib(bytes),
            board.mender.as_ref().map_or("", |x| x.device_type.as_str()),
            if args.sign_key.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        );
    }
    println!(
        "tarball: {} bytes ({:.2} MiB)",
        created.tarball_bytes,
        mib(created.tarball_bytes)
    );
    println!(
        "binary:  {} bytes ({:.2} MiB), {} for {}",
        m.binary.bytes,
        mib(m.binary.bytes),
        m.target,
        m.target_cpu
    );
    println!(
        "model:   {} bytes, sha256 {}",
        m.model.bytes, m.model.sha256
    );
    match &m.detector {
        Some(d) => println!(
            "detector: {} bytes, sha256 {} (+ licence)",
            d.model.bytes, d.model.sha256
        ),
        None => println!("detector: none (the guide box)"),
    }
    Ok(())
}

/// SOURCE_DATE_EPOCH, when set, makes the tarball and manifest reproducible.
fn created_unix() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{s}` is not a number of seconds")),
        Err(_) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs()),
    }
}

fn flash(boards_dir: &std::path::Path, args: FlashArgs) -> Result<()> {
    let board = Board::find(boards_dir, &args.board)?;
    let ssh = args.ssh.map(|dest| Ssh {
        dest,
        port: args.ssh_port,
        remote_root: args.remote_root,
    });
    if args.rollback {
        if let Some(root) = &args.rootfs {
            let r = flash::rollback_rootfs(&board, root)?;
            println!(
                "rolled back {} in {}: current {}, previous {}",
                board.name,
                r.base.display(),
                r.to,
                r.from
            );
        } else if let Some(ssh) = &ssh {
            ssh.rollback(&board)?;
            println!("rolled back {} on {}", board.name, ssh.dest);
        }
        return Ok(());
    }
    let Some(path) = &args.bundle else {
        bail!("--bundle is required unless --rollback is given");
    };
    let bundle = Bundle::read(path)?;
    bundle.check_board(&board.name)?;
    if let Some(root) = &args.rootfs {
        let r = flash::install_rootfs(&bundle, root)?;
        println!(
            "installed {} {} in {} (previous: {})",
            board.name,
            r.version,
            r.base.display(),
            r.previous.as_deref().unwrap_or("none")
        );
    } else if let Some(ssh) = &ssh {
        ssh.install(&bundle)?;
        println!(
            "installed {} {} on {}",
            board.name, bundle.manifest.version, ssh.dest
        );
    }
    Ok(())
}
