#!/usr/bin/env bash
# Turn the server's container image into the chroot archive a Siemens FIRE installation loads.
#
#   deploy/fire/make_chroot.sh [--image mrzero-server:cpu | --from-tar rootfs.tar] [-o mrzero-chroot.img.zip]
#
# FIRE runs an external reconstruction as a chroot: an ext3 file-system image holding a whole
# root file system, zipped. We export the image's file system (`docker export` of a created,
# never started container), add the FIRE start script, and build the ext3 image with
# `mke2fs -d`, which fills the file system from a folder without root rights or loop mounts.
# `--from-tar` takes an already exported root file system (for machines without Docker).
set -euo pipefail

image="mrzero-server:cpu"
from_tar=""
out="mrzero-chroot.img.zip"
headroom_mb=256
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --from-tar) from_tar="$2"; shift 2 ;;
    -o|--output) out="$2"; shift 2 ;;
    --headroom-mb) headroom_mb="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "make_chroot: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$from_tar" ]; then
  command -v docker >/dev/null || { echo "make_chroot: docker not found; use --from-tar" >&2; exit 1; }
  cid=$(docker create "$image")
  docker export -o "$work/rootfs.tar" "$cid"
  docker rm "$cid" >/dev/null
  from_tar="$work/rootfs.tar"
fi
[ -s "$from_tar" ] || { echo "make_chroot: $from_tar is missing or empty" >&2; exit 1; }

mkdir "$work/root"
tar -xf "$from_tar" -C "$work/root" --no-same-owner
install -D -m 0755 "$here/start-fire-server.sh" "$work/root/opt/mrzero/start-fire-server.sh"

used_mb=$(du -sm "$work/root" | cut -f1)
size_mb=$((used_mb + headroom_mb))
img="$work/$(basename "${out%.zip}")"
mke2fs -q -F -t ext3 -L mrzero -d "$work/root" "$img" "${size_mb}M" >/dev/null
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
rm -f "$out_abs"
zip -q -j "$out_abs" "$img"
echo "make_chroot: wrote $out (${size_mb} MB ext3 image; start command /opt/mrzero/start-fire-server.sh)"
