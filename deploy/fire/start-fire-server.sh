#!/bin/sh
# Start command for the FIRE chroot: the server listens where FIRE connects (port 9002 by default)
# and journals into the chroot's /data (FIRE keeps the chroot's file system between scans).
export PATH=/opt/mrzero/bin:$PATH
export MRZERO_HOST="${MRZERO_HOST:-0.0.0.0}"
export MRZERO_PORT="${MRZERO_PORT:-9002}"
export MRZERO_HEALTH_PORT="${MRZERO_HEALTH_PORT:-9080}"
export MRZERO_DATA_DIR="${MRZERO_DATA_DIR:-/data/journal}"
export MRZERO_BUNDLE_STORE="${MRZERO_BUNDLE_STORE:-/data/bundles}"
# matplotlib's font cache, kept with the chroot's data between scans
export MPLCONFIGDIR="${MPLCONFIGDIR:-/data/matplotlib}"
mkdir -p "$MRZERO_DATA_DIR" "$MRZERO_BUNDLE_STORE" "$MPLCONFIGDIR"
exec mrzero serve "$@"
