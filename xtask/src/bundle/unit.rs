//! The systemd unit of a release.
use crate::board::{Board, CameraPath, DYNAMIC_USER, TOKEN_FILE, TOKEN_VAR};

/// The unit's command line: edge-runtime `run`, or `kiosk` (the same model and camera flags,
/// plus `--listen`) when the profile's kiosk is on. The token never appears here: the unit
/// passes it in the environment (see [`render_unit`]).
pub fn exec_start(board: &Board, detector: bool) -> String {
    let prefix = &board.install.prefix;
    let cam = &board.camera;
    let wrapper = match cam.path {
        CameraPath::Uvc => "",
        CameraPath::Libcamerify => "/usr/bin/libcamerify ",
    };
    let (command, listen) = if board.kiosk.enabled {
        ("kiosk", format!(" --listen {}", board.kiosk.listen_addr()))
    } else {
        ("run", String::new())
    };
    // With a detector every face in view is found and answered; without, the guide box.
    let detect = if detector {
        format!(" --detector {prefix}/current/{}", super::DETECTOR)
    } else {
        String::new()
    };
    format!(
        "{wrapper}{prefix}/current/bin/edge-runtime {command} --model \
         {prefix}/current/model/model.onnx --source v4l:{} --camera-format {} --width {} \
         --height {} --fps {}{detect}{listen}",
        cam.device, cam.format, cam.width, cam.height, cam.fps
    )
}

pub fn render_unit(board: &Board, version: &str, detector: bool) -> String {
    let mut account = String::new();
    if board.install.user == DYNAMIC_USER {
        account.push_str(
            "# No account in /etc/passwd: systemd allocates an unprivileged user for each start;\n\
             # the camera is reachable through the supplementary group(s).\n\
             DynamicUser=yes\n",
        );
    } else {
        account.push_str(&format!("User={}\n", board.install.user));
    }
    if !board.install.groups.is_empty() {
        account.push_str(&format!(
            "SupplementaryGroups={}\n",
            board.install.groups.join(" ")
        ));
    }
    let mut devices = String::from("DeviceAllow=char-video4linux rw\n");
    if board.camera.path == CameraPath::Libcamerify {
        // libcamera drives the sensor through the media controller and allocates frame
        // buffers from DMA heaps (kernel device names; not yet tried on a board).
        devices.push_str("DeviceAllow=char-media rw\nDeviceAllow=char-dma_heap rw\n");
    }
    let mut unit_description = format!("HydraNet edge runtime ({})", board.name);
    let mut after = String::from("After=local-fs.target\n");
    let mut kiosk_lines = String::new();
    let k = &board.kiosk;
    if k.enabled {
        let addr = k.listen_addr();
        unit_description = format!("HydraNet edge kiosk on {addr} ({})", board.name);
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            // One address of one interface: it must be up before the kiosk can bind it.
            after.push_str("Wants=network-online.target\nAfter=network-online.target\n");
        }
        kiosk_lines.push_str(&format!(
            "# kiosk: the camera page on http://{addr}/ (/healthz, /metrics), shown full screen\n\
             # by the browser autostart in {prefix}/current/kiosk/.\n",
            prefix = board.install.prefix
        ));
        if k.token_env {
            kiosk_lines.push_str(&format!(
                "# The token is never on the command line: {TOKEN_VAR}=... in {TOKEN_FILE}\n\
                 # (root-only is fine: systemd reads it; without the file the kiosk runs open).\n\
                 EnvironmentFile=-{TOKEN_FILE}\n"
            ));
        }
    }
    format!(
        "# HydraNet edge runtime for {name}, release {version}: {description}.\n\
         # Made by `cargo xtask bundle`; installed by install.sh or `cargo xtask flash`.\n\
         [Unit]\n\
         Description={unit_description}\n\
         {after}\
         \n\
         [Service]\n\
         # edge-runtime sends READY=1 once frames flow, then WATCHDOG=1 while its loop runs:\n\
         # a hung process is killed and restarted.\n\
         Type=notify\n\
         {kiosk_lines}\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         WatchdogSec=10\n\
         {account}\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         {devices}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = board.name,
        description = board.description,
        exec = exec_start(board, detector),
    )
}
