# Sourced by scripts/qemu-nitro.sh and .ci/run. apt_run CMD…: run an apt-get command, and while
# another apt-get or dpkg holds its lock (a CI image's unattended upgrade, a parallel job), wait for
# it instead of failing (up to APT_LOCK_WAIT_S seconds, default 900). Other errors return 1 with
# apt's message on stderr.
APT_LOCK_WAIT_S=${APT_LOCK_WAIT_S:-900}
apt_run() {
  local out waited=0
  while :; do
    if out="$("$@" -o DPkg::Lock::Timeout=60 2>&1 >/dev/null)"; then return 0; fi
    if grep -qE 'Could not get lock|Unable to lock|Unable to acquire|is held by process' <<<"$out" && [ "$waited" -lt "$APT_LOCK_WAIT_S" ]; then
      [ "$waited" = 0 ] && printf '[apt] waiting for the apt/dpkg lock held by another process (up to %s s)\n' "$APT_LOCK_WAIT_S" >&2
      sleep 5
      waited=$((waited + 5))
      continue
    fi
    printf '%s\n' "$out" >&2
    return 1
  done
}
