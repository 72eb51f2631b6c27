#!/usr/bin/env bash
# boot-test.sh: boot Debian's arm64 kernel in qemu-system-aarch64 with a busybox
# initramfs, load the vivid V4L2 test driver (a real V4L2 capture device at
# /dev/video0) and run the edge runtime (or any command) inside the VM.
#
# See boards/qemu/README.md. Run with --help for the options.
set -euo pipefail
shopt -s lastpipe

readonly PROG=boot-test
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

# Exit codes (also in the README).
readonly E_RUN=1        # the command (or the probe) exited non-zero
readonly E_USAGE=2      # bad arguments, missing host tools, download/packaging failure
readonly E_TIMEOUT=3    # the VM did not power off within --timeout
readonly E_PANIC=4      # kernel panic, or the VM ended before the boot marker
readonly E_MODULE=5     # a kernel module failed to load
readonly E_NOVIDEO=6    # /dev/video0 missing or not a capture node
readonly E_NOEXIT=7     # boot marker seen, but the VM ended before HYDRANET-EXIT

readonly DEFAULT_CMD="/opt/hydranet/bin/edge-runtime run --model /opt/hydranet/model/model.onnx --source v4l:/dev/video0 --camera-format yuyv --fps 30 --max-predictions 3 --progress 0"
# A release that ships the face detector also runs with it: the frames go through BlazeFace
# on the board's CPU and every frame prints a line (vivid's test pattern has no face, so
# the lines say "faces": 0).
readonly DETECT_CMD="/opt/hydranet/bin/edge-runtime run --model /opt/hydranet/model/model.onnx --detector /opt/hydranet/model/face_detector.onnx --source v4l:/dev/video0 --camera-format yuyv --fps 30 --all --max-predictions 5 --progress 0"
readonly PROBE_CMD="/opt/hydranet/bin/v4l-probe -d /dev/video0 -n 5 -W 640 -H 480 -f YUYV"
# Debian bookworm, arm64. The mirrors can be overridden from the environment.
readonly DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${HYDRANET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${HYDRANET_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBIAN_KEYRING=${HYDRANET_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

# The vivid dependency chain is derived from each module's depends= field;
# this is only the root.
readonly CAMERA_MODULE=vivid

usage() {
	cat <<EOF
Usage: $0 (--bundle FILE.tar.gz | --binary PATH --model PATH | --probe | --cmd CMD) [options]

Boots Debian bookworm's arm64 kernel in qemu-system-aarch64 (-M virt) with a
busybox initramfs, loads the vivid V4L2 driver (capture node /dev/video0) and
runs a command inside the VM. Prints a summary; exit status 0 only if the VM
booted and the command exited 0.

Payload (what goes to /opt/hydranet in the VM):
  --bundle FILE.tar.gz   board bundle; its single top folder hydranet-edge-<board>-<version>/
                         must hold bin/edge-runtime and model/model.onnx; the whole folder
                         becomes /opt/hydranet
  --binary PATH          static aarch64 binary, installed as /opt/hydranet/bin/edge-runtime
  --model PATH           model, installed as /opt/hydranet/model/model.onnx
  --probe                also build boards/qemu/v4l-probe.c (aarch64-linux-gnu-gcc -static),
                         install it as /opt/hydranet/bin/v4l-probe and run
                           $PROBE_CMD
                         before the command (without a payload and --cmd, only the probe runs)

Options:
  --cmd "CMD"            command line run inside the VM (busybox sh; PATH includes
                         /opt/hydranet/bin). Default:
                           $DEFAULT_CMD
  --cache DIR            download cache (default \${XDG_CACHE_HOME:-\$HOME/.cache}/hydranet-edge/boot)
  --refresh              re-run apt-get update and re-resolve the current kernel package
  --timeout SECONDS      limit for the whole VM run, boot to power-off (default 180)
  --log FILE             console log (default: console.log in a new temp dir, printed)
  --cpu CPU              qemu -cpu (default cortex-a72)
  --vivid-params "..."   vivid module parameters (default "n_devs=1 node_types=0x1":
                         one instance, video capture node only)
  --keep                 keep the initramfs build folder (printed)
  -h, --help             this text

Exit status: 0 ok; $E_RUN command or probe failed; $E_USAGE usage/host/download error;
$E_TIMEOUT timeout; $E_PANIC kernel panic or no boot marker; $E_MODULE module load failure;
$E_NOVIDEO no /dev/video0 capture node; $E_NOEXIT VM ended before the command finished.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	local code=$1
	shift
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit "$code"
}
need() {
	local tool=$1 pkg=$2
	command -v "$tool" >/dev/null 2>&1 || die "$E_USAGE" "'$tool' not found (Debian package: $pkg)"
}
# Seconds between two $EPOCHREALTIME values, 2 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ---------------------------------------------------------------- arguments
BUNDLE="" BINARY="" MODEL="" CMD="" CMD_SET=0 PROBE=0 REFRESH=0 KEEP=0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hydranet-edge/boot"
TIMEOUT=180 LOG="" CPU=cortex-a72 VIVID_PARAMS="n_devs=1 node_types=0x1"

while (($#)); do
	opt=$1
	val=""
	has_val=0
	case $opt in
	--*=*)
		val=${opt#*=}
		opt=${opt%%=*}
		has_val=1
		;;
	esac
	case $opt in
	--bundle | --binary | --model | --cmd | --cache | --timeout | --log | --cpu | --vivid-params)
		if ((!has_val)); then
			(($# >= 2)) || die "$E_USAGE" "$opt needs a value"
			val=$2
			shift
		fi
		;;
	esac
	case $opt in
	--bundle) BUNDLE=$val ;;
	--binary) BINARY=$val ;;
	--model) MODEL=$val ;;
	--cmd) CMD=$val CMD_SET=1 ;;
	--cache) CACHE=$val ;;
	--timeout) TIMEOUT=$val ;;
	--log) LOG=$val ;;
	--cpu) CPU=$val ;;
	--vivid-params) VIVID_PARAMS=$val ;;
	--probe) PROBE=1 ;;
	--refresh) REFRESH=1 ;;
	--keep) KEEP=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "$E_USAGE" "unknown argument: $1"
		;;
	esac
	shift
done

if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((TIMEOUT == 0)); then
	die "$E_USAGE" "--timeout must be a positive integer (seconds)"
fi
if [[ -n $BUNDLE ]]; then
	[[ -z $BINARY && -z $MODEL ]] || die "$E_USAGE" "give --bundle or --binary/--model, not both"
	[[ -f $BUNDLE ]] || die "$E_USAGE" "bundle not found: $BUNDLE"
elif [[ -n $BINARY || -n $MODEL ]]; then
	[[ -n $BINARY && -n $MODEL ]] || die "$E_USAGE" "--binary and --model go together"
	[[ -f $BINARY ]] || die "$E_USAGE" "binary not found: $BINARY"
	[[ -f $MODEL ]] || die "$E_USAGE" "model not found: $MODEL"
elif ((!PROBE && !CMD_SET)); then
	usage >&2
	die "$E_USAGE" "no payload: give --bundle, --binary/--model, --probe or --cmd"
fi
HAVE_PAYLOAD=0
[[ -n $BUNDLE || -n $BINARY ]] && HAVE_PAYLOAD=1
if ((!CMD_SET)); then
	if ((HAVE_PAYLOAD)); then CMD=$DEFAULT_CMD; else CMD=""; fi
fi
[[ $CMD != *$'\n'* ]] || die "$E_USAGE" "--cmd must be a single line"

need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need cpio cpio
need gzip gzip
need sha256sum coreutils
need timeout coreutils
need flock util-linux
need awk gawk/mawk
need qemu-system-aarch64 qemu-system-arm
if ((PROBE)); then need aarch64-linux-gnu-gcc "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"; fi
[[ -r $DEBIAN_KEYRING ]] || die "$E_USAGE" "Debian archive keyring $DEBIAN_KEYRING not readable (Debian package: debian-archive-keyring)"

# ------------------------------------------------------------- work folder
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hydranet-boot.XXXXXX")
WORK=$RUN_DIR/work
ROOT=$WORK/root
mkdir -p "$ROOT"
[[ -n $LOG ]] || LOG=$RUN_DIR/console.log
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	if ((KEEP)); then
		say "kept the build folder $WORK"
	else
		rm -rf "$WORK"
		# an empty default log (we stopped before booting) is not worth keeping
		if [[ $LOG == "$RUN_DIR/console.log" && ! -s $LOG ]]; then rm -f "$LOG"; fi
		rmdir "$RUN_DIR" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# ----------------------------------------------------------------- payload
mkdir -p "$ROOT/opt/hydranet/bin" "$ROOT/opt/hydranet/model" "$ROOT/etc/hydranet"

check_aarch64_static() { # file label
	local f=$1 what=$2 hdr
	if ! command -v readelf >/dev/null 2>&1; then
		say "warning: readelf not found (binutils): not checking that $what is a static aarch64 binary"
		return 0
	fi
	hdr=$(readelf -h "$f" 2>/dev/null) || die "$E_USAGE" "$what ($f) is not an ELF file"
	grep -q 'Machine:.*AArch64' <<<"$hdr" || die "$E_USAGE" "$what ($f) is not an aarch64 binary: $(grep Machine: <<<"$hdr" | tr -s ' ')"
	if readelf -l "$f" 2>/dev/null | grep -q 'program interpreter'; then
		die "$E_USAGE" "$what ($f) is dynamically linked; the initramfs has no libc: build it static (aarch64-unknown-linux-musl)"
	fi
}

if [[ -n $BUNDLE ]]; then
	tops=$(tar -tzf "$BUNDLE" | sed -e 's#^\./##' -e 's#/.*##' | sort -u | grep -v '^$') ||
		die "$E_USAGE" "cannot list $BUNDLE"
	[[ $(wc -l <<<"$tops") -eq 1 && $tops == hydranet-edge-* ]] ||
		die "$E_USAGE" "bundle must have a single top folder hydranet-edge-<board>-<version>/, found: $(tr '\n' ' ' <<<"$tops")"
	mkdir -p "$WORK/bundle"
	tar -xzf "$BUNDLE" -C "$WORK/bundle" --no-same-owner
	bdir=$WORK/bundle/$tops
	[[ -f $bdir/bin/edge-runtime ]] || die "$E_USAGE" "bundle $tops has no bin/edge-runtime"
	[[ -f $bdir/model/model.onnx ]] || die "$E_USAGE" "bundle $tops has no model/model.onnx"
	check_aarch64_static "$bdir/bin/edge-runtime" "bin/edge-runtime of $tops"
	cp -a "$bdir/." "$ROOT/opt/hydranet/"
	say "payload: bundle $tops ($(du -sh "$bdir" | cut -f1))"
	if ((!CMD_SET)) && [[ -f $bdir/model/face_detector.onnx ]]; then
		CMD="$DEFAULT_CMD && $DETECT_CMD"
		say "the bundle ships the face detector: a second run uses it"
	fi
elif [[ -n $BINARY ]]; then
	check_aarch64_static "$BINARY" "--binary"
	cp "$BINARY" "$ROOT/opt/hydranet/bin/edge-runtime"
	cp "$MODEL" "$ROOT/opt/hydranet/model/model.onnx"
	say "payload: $BINARY + $MODEL"
fi
chmod 0755 "$ROOT/opt/hydranet/bin/edge-runtime" 2>/dev/null || true

if ((PROBE)); then
	aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -o "$ROOT/opt/hydranet/bin/v4l-probe" \
		"$SCRIPT_DIR/v4l-probe.c" || die "$E_USAGE" "building v4l-probe failed"
	aarch64-linux-gnu-strip "$ROOT/opt/hydranet/bin/v4l-probe" 2>/dev/null || true
fi

# ------------------------------------------------------------------- cache
# Layout:
#   apt/       private apt state: sources.list, lists/, cache/, an empty dpkg status
#   debs/      the downloaded .debs (hashes checked against the signed lists)
#   extract/   dpkg-deb -x of each .deb
#   current.env  the resolved package names, versions, file names and SHA256
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
APT_DIR=$CACHE/apt
DEB_DIR=$CACHE/debs
EXTRACT_DIR=$CACHE/extract
STATE_FILE=$CACHE/current.env

APT_OPTS=(
	-q
	-oAPT::Architecture=arm64
	-oAPT::Architectures=arm64
	"-oDir::State=$APT_DIR/state"
	"-oDir::State::Lists=$APT_DIR/lists"
	"-oDir::State::status=$APT_DIR/state/status"
	"-oDir::Cache=$APT_DIR/cache"
	"-oDir::Etc::sourcelist=$APT_DIR/sources.list"
	"-oDir::Etc::sourceparts=$APT_DIR/sources.list.d"
	"-oDir::Etc::preferences=$APT_DIR/preferences"
	"-oDir::Etc::preferencesparts=$APT_DIR/preferences.d"
	# Only the Packages indices (the host may add AppStream metadata targets).
	-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
	-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
)
# As root, apt drops to the _apt user for downloads, which cannot write into a
# root-owned cache; it would then fall back to root with a warning anyway.
if ((EUID == 0)); then APT_OPTS+=(-oAPT::Sandbox::User=root); fi

apt_setup() {
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/state" \
		"$APT_DIR/sources.list.d" "$APT_DIR/preferences.d" "$DEB_DIR" "$EXTRACT_DIR"
	: >"$APT_DIR/state/status"
	local o="arch=arm64 signed-by=$DEBIAN_KEYRING"
	cat >"$APT_DIR/sources.list" <<EOF
deb [$o] $DEBIAN_MIRROR $DEBIAN_SUITE main
deb [$o] $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb [$o] $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main
EOF
}

# Field of the candidate version of a package, from the (signed) lists.
apt_field() {
	apt-cache "${APT_OPTS[@]}" show --no-all-versions "$1" |
		awk -v f="$2" 'index($0, f ": ") == 1 { print substr($0, length(f) + 3); exit }'
}

fetch_packages() {
	apt_setup
	say "apt-get update (Debian $DEBIAN_SUITE arm64 lists, into $APT_DIR)"
	apt-get "${APT_OPTS[@]}" update >&2 || die "$E_USAGE" "apt-get update failed"
	local dep kpkg
	dep=$(apt_field linux-image-arm64 Depends)
	kpkg=$(printf '%s\n' "$dep" | tr ',' '\n' | awk '$1 ~ /^linux-image-/ { print $1; exit }')
	[[ $kpkg =~ ^linux-image-[0-9][0-9.]*-[0-9]+-arm64$ ]] ||
		die "$E_USAGE" "could not resolve the kernel from linux-image-arm64 (Depends: $dep)"
	local pkg ver file sha
	{
		for pkg in "$kpkg" busybox-static; do
			ver=$(apt_field "$pkg" Version)
			sha=$(apt_field "$pkg" SHA256)
			[[ -n $ver && -n $sha ]] || die "$E_USAGE" "no candidate for $pkg"
			# apt-get names the file <pkg>_<version, ':' as %3a>_<arch>.deb
			file=${pkg}_${ver//:/%3a}_arm64.deb
			if [[ -f $DEB_DIR/$file ]] && sha256_ok "$DEB_DIR/$file" "$sha"; then
				say "have $file"
			else
				say "apt-get download $pkg=$ver"
				rm -rf "${EXTRACT_DIR:?}/${file%.deb}"
				# apt-get download checks the file against the SHA256 of the signed lists.
				(cd "$DEB_DIR" && apt-get "${APT_OPTS[@]}" download "$pkg=$ver" >&2) ||
					die "$E_USAGE" "apt-get download $pkg=$ver failed"
			fi
			[[ -f $DEB_DIR/$file ]] || die "$E_USAGE" "apt-get download did not leave $DEB_DIR/$file"
			local var=KERNEL
			[[ $pkg == busybox-static ]] && var=BUSYBOX
			printf '%s_PKG=%q\n%s_VERSION=%q\n%s_DEB=%q\n%s_SHA256=%q\n' \
				"$var" "$pkg" "$var" "$ver" "$var" "$file" "$var" "$sha"
		done
		printf 'RESOLVED=%q\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$STATE_FILE.new"
	mv "$STATE_FILE.new" "$STATE_FILE"
	# drop packages (and their extracted trees) that are no longer current
	local keep f
	keep=$(sed -n 's/^[A-Z]*_DEB=//p' "$STATE_FILE")
	for f in "$DEB_DIR"/*.deb; do
		[[ -e $f ]] || continue
		if ! grep -qxF "$(printf '%q' "${f##*/}")" <<<"$keep"; then
			say "removing old ${f##*/}"
			rm -rf "$f" "${EXTRACT_DIR:?}/$(basename "$f" .deb)"
		fi
	done
}

sha256_ok() { # file sha256
	printf '%s  %s\n' "$2" "$1" | sha256sum --quiet -c - >/dev/null 2>&1
}

# Check the cached .debs against the SHA256 recorded from the signed lists.
cache_valid() {
	[[ -f $STATE_FILE ]] || return 1
	# shellcheck source=/dev/null
	source "$STATE_FILE"
	local d
	for d in "$KERNEL_DEB:$KERNEL_SHA256" "$BUSYBOX_DEB:$BUSYBOX_SHA256"; do
		[[ -f $DEB_DIR/${d%%:*} ]] || return 1
		sha256_ok "$DEB_DIR/${d%%:*}" "${d#*:}" || {
			say "cached ${d%%:*} does not match its SHA256; fetching again"
			rm -rf "${DEB_DIR:?}/${d%%:*}" "${EXTRACT_DIR:?}/$(basename "${d%%:*}" .deb)"
			return 1
		}
	done
}

# Extract a .deb into the cache once; prints the folder. With patterns, only the
# matching members (tar wildcards): for the kernel, /boot and drivers/media
# (64 MB instead of 350 MB); other modules are pulled out on demand.
extract_deb() { # deb-file [tar-pattern...]
	local deb=$1 out
	shift
	out=$EXTRACT_DIR/$(basename "$deb" .deb)
	if [[ ! -f $out/.complete ]]; then
		rm -rf "$out"
		mkdir -p "$out"
		if (($#)); then
			dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$out" --wildcards "$@" ||
				die "$E_USAGE" "extracting $* from $deb failed"
		else
			dpkg-deb -x "$deb" "$out" || die "$E_USAGE" "dpkg-deb -x $deb failed"
		fi
		touch "$out/.complete"
	fi
	printf '%s\n' "$out"
}

T_FETCH0=$EPOCHREALTIME
exec 9>"$CACHE/.lock"
flock 9
if ((REFRESH)) || ! cache_valid; then
	fetch_packages
	cache_valid || die "$E_USAGE" "downloaded packages do not match the lists"
	FETCHED=1
else
	FETCHED=0
fi
# shellcheck source=/dev/null
source "$STATE_FILE"
KDIR=$(extract_deb "$DEB_DIR/$KERNEL_DEB" './boot/*' './lib/modules/*/modules.*' \
	'./lib/modules/*/kernel/drivers/media/*')
BBDIR=$(extract_deb "$DEB_DIR/$BUSYBOX_DEB")
flock -u 9
T_FETCH1=$EPOCHREALTIME
if ((FETCHED)); then
	say "fetched $KERNEL_PKG $KERNEL_VERSION and busybox-static $BUSYBOX_VERSION in $(elapsed "$T_FETCH0" "$T_FETCH1") s"
else
	say "cached: $KERNEL_PKG $KERNEL_VERSION, busybox-static $BUSYBOX_VERSION (resolved $RESOLVED; --refresh to update)"
fi

KVER=${KERNEL_PKG#linux-image-}
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
MODDIR=$KDIR/lib/modules/$KVER
BUSYBOX=$BBDIR/bin/busybox
[[ -f $VMLINUZ ]] || die "$E_USAGE" "no kernel image $VMLINUZ in $KERNEL_DEB"
[[ -d $MODDIR ]] || die "$E_USAGE" "no module tree $MODDIR in $KERNEL_DEB"
[[ -x $BUSYBOX ]] || die "$E_USAGE" "no busybox in $BUSYBOX_DEB"

# ----------------------------------------------------------------- modules
# depends= of one module file (uncompressed .ko), via modinfo if present,
# else the .modinfo ELF section (readelf), else strings.
mod_field() {
	local ko=$1 field=$2
	if command -v modinfo >/dev/null 2>&1; then
		modinfo -F "$field" "$ko"
	elif command -v readelf >/dev/null 2>&1; then
		readelf -p .modinfo "$ko" | sed -n "s/^ *\[ *[0-9a-f]*\] *$field=//p"
	else
		strings -a "$ko" | sed -n "s/^$field=//p"
	fi
}

declare -A MOD_SRC=()   # normalized name (- as _) -> extracted file
declare -A MOD_STATE=() # normalized name -> visiting|loaded
MOD_ORDER=()

index_modules() {
	local f b
	while IFS= read -r -d '' f; do
		b=${f##*/}
		b=${b%.ko*}
		MOD_SRC[${b//-/_}]=$f
	done < <(find "$MODDIR/kernel" \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)
}
# A module outside the extracted part of the package: take it from the .deb.
extract_module() {
	local n=$1 v
	flock 9
	for v in "$n" "${n//_/-}"; do
		dpkg-deb --fsys-tarfile "$DEB_DIR/$KERNEL_DEB" |
			tar -x -C "$KDIR" --wildcards "./lib/modules/$KVER/kernel/*/$v.ko*" 2>/dev/null || true
	done
	flock -u 9
	index_modules
}
index_modules
((${#MOD_SRC[@]})) || die "$E_USAGE" "no modules under $MODDIR/kernel"

mkdir -p "$ROOT/lib/modules/$KVER"
# Copy one module into the initramfs, decompressed (busybox insmod takes plain .ko).
stage_module() {
	local src=$1 dst=$2
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	esac
}
add_module() { # depth-first: dependencies first, in depends= order
	local n
	n=${1//-/_}
	case ${MOD_STATE[$n]:-} in
	loaded) return 0 ;;
	visiting) die "$E_USAGE" "module dependency cycle at $1" ;;
	esac
	[[ -n ${MOD_SRC[$n]:-} ]] || extract_module "$n"
	[[ -n ${MOD_SRC[$n]:-} ]] || die "$E_USAGE" "module $1 not found in $KERNEL_DEB"
	MOD_STATE[$n]=visiting
	local ko=$ROOT/lib/modules/$KVER/$n.ko deps vermagic d
	stage_module "${MOD_SRC[$n]}" "$ko"
	vermagic=$(mod_field "$ko" vermagic)
	[[ $vermagic == "$KVER "* ]] || die "$E_USAGE" "module $1: vermagic '$vermagic' is not for $KVER"
	deps=$(mod_field "$ko" depends)
	local IFS=,
	for d in $deps; do
		[[ -n $d ]] && add_module "$d"
	done
	MOD_STATE[$n]=loaded
	MOD_ORDER+=("$n")
}
add_module "$CAMERA_MODULE"
say "module order (from depends=): ${MOD_ORDER[*]}"

# -------------------------------------------------------------------- init
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/proc" "$ROOT/sys" \
	"$ROOT/dev" "$ROOT/tmp" "$ROOT/run" "$ROOT/root"
cp "$BUSYBOX" "$ROOT/bin/busybox"
printf '%s\n' "${MOD_ORDER[@]}" >"$ROOT/etc/hydranet/modules"
printf '%s\n' "$CMD" >"$ROOT/etc/hydranet/cmd"
{
	printf 'KVER=%q\n' "$KVER"
	printf 'CAMERA_MODULE=%q\n' "$CAMERA_MODULE"
	printf 'CAMERA_PARAMS=%q\n' "$VIVID_PARAMS"
	printf 'PROBE=%q\n' "$PROBE"
	printf 'PROBE_CMD=%q\n' "$PROBE_CMD"
	if [[ -n $CMD ]]; then echo HAVE_CMD=1; else echo HAVE_CMD=0; fi
} >"$ROOT/etc/hydranet/config"

cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
# HydraNet boot test init (generated by boards/qemu/boot-test.sh)
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
export PATH=/opt/hydranet/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root RUST_BACKTRACE=1
mount -t tmpfs tmpfs /tmp
. /etc/hydranet/config
echo "init: started at $(cut -d' ' -f1 /proc/uptime) s (guest uptime)"

halt_vm() { sync; poweroff -f; sleep 5; echo "HYDRANET-FAIL: poweroff did not stop the VM"; }
fail() { echo "HYDRANET-FAIL: $*"; dmesg | tail -n 25; halt_vm; }

while read -r m; do
	params=""
	[ "$m" = "$CAMERA_MODULE" ] && params=$CAMERA_PARAMS
	# shellcheck disable=SC2086
	if ! insmod "/lib/modules/$KVER/$m.ko" $params; then
		echo "HYDRANET-MODULE-FAIL=$m"
		fail "insmod $m failed"
	fi
done </etc/hydranet/modules

i=0
while [ ! -c /dev/video0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -c /dev/video0 ]; then
	echo "HYDRANET-NO-VIDEO0"
	ls -l /dev /sys/class/video4linux 2>&1
	fail "/dev/video0 did not appear"
fi
name0=$(cat /sys/class/video4linux/video0/name 2>/dev/null)
case $name0 in
vivid*vid-cap* | "") ;;
vivid*) echo "HYDRANET-NO-VIDEO0"; fail "/dev/video0 is '$name0', not a vivid capture node" ;;
esac

echo "HYDRANET-BOOT-OK"
uname -a
echo "uptime: $(cut -d' ' -f1 /proc/uptime) s (modules loaded, /dev/video0 present), cpus: $(nproc), mem: $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo)"
echo "modules: $(tr '\n' ' ' </etc/hydranet/modules)($CAMERA_PARAMS)"
for v in /sys/class/video4linux/*; do
	[ -e "$v" ] || continue
	n=${v##*/}
	echo "/dev/$n: $(cat "$v/name") ($(stat -c '%A, char %t:%T (hex)' "/dev/$n"))"
done

if [ "$PROBE" = 1 ]; then
	echo "HYDRANET-PROBE-BEGIN"
	$PROBE_CMD </dev/null
	echo "HYDRANET-PROBE-EXIT=$?"
fi
rc=0
if [ "$HAVE_CMD" = 1 ]; then
	echo "HYDRANET-RUN-BEGIN: $(cat /etc/hydranet/cmd)"
	t0=$(cut -d' ' -f1 /proc/uptime)
	sh /etc/hydranet/cmd </dev/null
	rc=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "HYDRANET-RUN-END: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
fi
echo "HYDRANET-EXIT=$rc"
halt_vm
INIT
chmod 0755 "$ROOT/init"

INITRD=$WORK/initrd.gz
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
	gzip -6 >"$INITRD"
say "initramfs: $(du -h "$INITRD" | cut -f1) (${#MOD_ORDER[@]} modules, busybox $BUSYBOX_VERSION)"

# -------------------------------------------------------------------- boot
APPEND="console=ttyAMA0 rdinit=/init quiet panic=-1"
# -nic none: no default virtio NIC (it needs efi-virtio.rom from ipxe-qemu; the test needs no network)
QEMU=(qemu-system-aarch64 -M virt -cpu "$CPU" -smp 2 -m 1024 -nographic -no-reboot -nic none
	-kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND")
say "booting: ${QEMU[*]}"
say "console log: $LOG (timeout ${TIMEOUT}s)"

T_BOOT_MARK="" IN_RUN=0 JSON_LINES=0 EXIT_RC="" PROBE_RC="" MOD_FAIL="" NO_VIDEO=0 PANIC=0 FAIL_MSG="" QEMU_ERR=""
T0=$EPOCHREALTIME
set +e
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 |
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%$'\r'}
		printf '%s\n' "$line" >>"$LOG"
		printf '%s\n' "$line"
		case $line in
		HYDRANET-BOOT-OK) T_BOOT_MARK=$EPOCHREALTIME ;;
		HYDRANET-RUN-BEGIN*) IN_RUN=1 ;;
		HYDRANET-RUN-END*) IN_RUN=0 ;;
		HYDRANET-EXIT=*) EXIT_RC=${line#HYDRANET-EXIT=} IN_RUN=0 ;;
		HYDRANET-PROBE-EXIT=*) PROBE_RC=${line#HYDRANET-PROBE-EXIT=} ;;
		HYDRANET-MODULE-FAIL=*) MOD_FAIL=${line#HYDRANET-MODULE-FAIL=} ;;
		HYDRANET-NO-VIDEO0) NO_VIDEO=1 ;;
		HYDRANET-FAIL:*) FAIL_MSG=${line#HYDRANET-FAIL: } ;;
		*"Kernel panic - not syncing"*) PANIC=1 FAIL_MSG=${line#*Kernel panic - not syncing: } ;;
		qemu-system-aarch64:*) [[ -n $QEMU_ERR ]] || QEMU_ERR=$line ;;
		"{"*) ((IN_RUN)) && JSON_LINES=$((JSON_LINES + 1)) ;;
		esac
	done
QEMU_RC=${PIPESTATUS[0]}
set -e
T1=$EPOCHREALTIME

# ----------------------------------------------------------------- summary
WALL=$(elapsed "$T0" "$T1")
BOOT_S="-"
[[ -n $T_BOOT_MARK ]] && BOOT_S=$(elapsed "$T0" "$T_BOOT_MARK")
STATUS=0
MSG="ok"
if [[ -n $MOD_FAIL ]]; then
	STATUS=$E_MODULE MSG="kernel module '$MOD_FAIL' failed to load"
elif ((NO_VIDEO)); then
	STATUS=$E_NOVIDEO MSG="no video capture node at /dev/video0${FAIL_MSG:+ ($FAIL_MSG)}"
elif ((PANIC)); then
	STATUS=$E_PANIC MSG="kernel panic: $FAIL_MSG"
elif ((QEMU_RC == 124 || QEMU_RC == 137)); then
	STATUS=$E_TIMEOUT MSG="timeout: the VM did not power off within ${TIMEOUT}s"
	[[ -z $T_BOOT_MARK ]] && MSG+=" (no boot marker)"
	[[ -n $T_BOOT_MARK && -z $EXIT_RC ]] && MSG+=" (the command was still running)"
elif [[ -z $T_BOOT_MARK && -n $QEMU_ERR ]]; then
	STATUS=$E_USAGE MSG="qemu failed (exit $QEMU_RC): $QEMU_ERR"
elif [[ -z $T_BOOT_MARK ]]; then
	STATUS=$E_PANIC MSG="the VM ended (qemu exit $QEMU_RC) before HYDRANET-BOOT-OK${FAIL_MSG:+: $FAIL_MSG}"
elif [[ -z $EXIT_RC ]]; then
	STATUS=$E_NOEXIT MSG="the VM ended (qemu exit $QEMU_RC) before HYDRANET-EXIT"
elif [[ -n $PROBE_RC && $PROBE_RC != 0 ]]; then
	STATUS=$E_RUN MSG="v4l-probe failed (exit $PROBE_RC)"
	[[ $EXIT_RC != 0 ]] && MSG+=", command failed (exit $EXIT_RC)"
elif [[ $EXIT_RC != 0 ]]; then
	STATUS=$E_RUN MSG="the command failed (exit $EXIT_RC)"
elif ((QEMU_RC != 0)); then
	# power-off via PSCI makes qemu exit 0; anything else is suspicious but the run passed
	MSG="ok (qemu exit $QEMU_RC)"
fi

{
	echo
	echo "== HydraNet QEMU boot test =="
	echo "kernel:        $KERNEL_PKG $KERNEL_VERSION (busybox-static $BUSYBOX_VERSION)"
	echo "machine:       virt, -cpu $CPU, 2 cpus, 1024 MiB"
	echo "wall:          ${WALL} s boot to power-off (boot marker after ${BOOT_S} s)"
	echo "boot marker:   $([[ -n $T_BOOT_MARK ]] && echo yes || echo no)"
	[[ -n $PROBE_RC ]] && echo "probe exit:    $PROBE_RC"
	echo "command:       ${CMD:-(none)}"
	echo "command exit:  ${EXIT_RC:-none}"
	echo "json lines:    $JSON_LINES"
	echo "console log:   $LOG"
	echo "result:        $MSG"
}
if ((STATUS)); then
	say "FAILED: $MSG"
fi
exit "$STATUS"
