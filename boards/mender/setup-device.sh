#!/bin/sh
# Installs and configures Debian's Mender client on a board, for HydraNet releases.
# Run as root on the board (or with --root DIR on a mounted board image):
#
#   sh setup-device.sh --device-type raspberrypi4 [--verify-key artifact-verify-key.pem]
#                      [--mode standalone | --mode managed --server-url URL --tenant-token T]
#                      [--package mender-client] [--no-install] [--root DIR]
#
# The values come from the board profile's [mender] section (boards/*.toml). It writes
#   DIR/var/lib/mender/device_type            device_type=<device type>
#   DIR/etc/mender/mender.conf                from mender.conf.standalone or .managed
#   DIR/etc/mender/artifact-verify-key.pem    the public key, when --verify-key is given:
#                                             the client then refuses unsigned artifacts
# and, in standalone mode, turns the client's polling daemon off (`mender install` and
# `mender commit` are run by hand or over ssh). The update module itself comes with every
# release (install.sh puts it in /usr/share/mender/modules/v3/hydranet-release).
set -eu

die() {
    echo "setup-device.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd -P)
root=
device_type=
verify_key=
mode=standalone
server_url=
tenant_token=
package=mender-client
install=1
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=${2%/}; shift 2 ;;
        --device-type) device_type=$2; shift 2 ;;
        --verify-key) verify_key=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --server-url) server_url=$2; shift 2 ;;
        --tenant-token) tenant_token=$2; shift 2 ;;
        --package) package=$2; shift 2 ;;
        --no-install) install=0; shift ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (--help)" ;;
    esac
done
case $device_type in
    '') die "--device-type is required (the board profile's [mender] device_type)" ;;
    *[!A-Za-z0-9._-]*) die "device type '$device_type' has characters other than A-Za-z0-9._-" ;;
esac
case $mode in
    standalone) template=$here/mender.conf.standalone ;;
    managed)
        template=$here/mender.conf.managed
        case $server_url in
            https://*) ;;
            *) die "--mode managed needs --server-url https://..." ;;
        esac
        case $server_url$tenant_token in
            *[\"\\]*) die "the server URL and tenant token may not hold quotes or backslashes" ;;
        esac
        ;;
    *) die "--mode is standalone or managed, not '$mode'" ;;
esac
if [ -n "$verify_key" ]; then
    [ -f "$verify_key" ] || die "verify key $verify_key does not exist"
    grep -q 'BEGIN PUBLIC KEY' "$verify_key" ||
        die "$verify_key is not a PEM public key (openssl pkey -in key.pem -pubout)"
fi

if [ "$install" = 1 ]; then
    [ -z "$root" ] || die "--root: install $package into the image yourself, then pass --no-install"
    if ! command -v mender >/dev/null 2>&1; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
    fi
fi

# Debian's package makes /var/lib/mender a link to /data/mender (Mender's data partition):
# on a board without /data, the link's folder has to be made.
if [ -L "$root/var/lib/mender" ] && [ ! -e "$root/var/lib/mender" ]; then
    target=$(readlink "$root/var/lib/mender")
    case $target in
        /*) mkdir -p "$root$target" ;;
        *) mkdir -p "$root/var/lib/$target" ;;
    esac
fi
mkdir -p "$root/var/lib/mender" "$root/etc/mender"
echo "device_type=$device_type" >"$root/var/lib/mender/device_type"
key_path=
if [ -n "$verify_key" ]; then
    key_path=/etc/mender/artifact-verify-key.pem
    cp "$verify_key" "$root$key_path"
    chmod 0644 "$root$key_path"
fi
# No key: the ArtifactVerifyKey line goes, and any artifact is taken (mender warns).
sed -e "s|@SERVER_URL@|$server_url|" -e "s|@TENANT_TOKEN@|$tenant_token|" \
    -e "s|@VERIFY_KEY@|$key_path|" "$template" |
    if [ -z "$key_path" ]; then grep -v '"ArtifactVerifyKey"'; else cat; fi \
        >"$root/etc/mender/mender.conf.new"
mv "$root/etc/mender/mender.conf.new" "$root/etc/mender/mender.conf"
chmod 0600 "$root/etc/mender/mender.conf"

if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    if [ "$mode" = managed ]; then
        systemctl enable --now mender-client.service
    else
        systemctl disable --now mender-client.service || true
    fi
fi
echo "mender: device type $device_type, $mode mode, $([ -n "$key_path" ] && echo "artifacts verified with $key_path" || echo "artifacts NOT verified (no --verify-key)")"
