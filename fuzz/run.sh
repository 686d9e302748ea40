#!/usr/bin/env bash
# Runs every cargo-fuzz target of cluso-ws for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 60)
#
# - Installs cargo-fuzz if missing (`cargo install cargo-fuzz --locked`, from crates.io).
# - cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sancov passes). This machine
#   has only the stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them; on a
#   nightly toolchain it changes nothing.
# - Seeds are read from the committed fuzz/corpus/<target>/; new inputs go to
#   fuzz/corpus-work/<target>/ (ignored by git) so a run leaves the repository clean.
# - A crash leaves the input in fuzz/artifacts/<target>/ and makes the run's status non-zero
#   (after the remaining targets have run); turn it into a regression unit test beside the
#   code it broke.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz not found; installing it from crates.io" >&2
  cargo install cargo-fuzz --locked
fi

if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

# Largest input tried: past the 16 KiB head limit so the parser's "too large" path is reached,
# and long enough for deeply nested client messages.
max_len=20000

# Every target runs for its full time even when an earlier one crashed; the status is
# non-zero if any did.
targets=$(cargo fuzz list)
failed=()
for target in $targets; do
  mkdir -p "corpus-work/$target" "corpus/$target"
  echo "== fuzzing $target for ${seconds}s" >&2
  if ! cargo fuzz run "$target" "corpus-work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1; then
    failed+=("$target")
    echo "!! $target found a crash; the input is in fuzz/artifacts/$target/" >&2
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== crashed: ${failed[*]}" >&2
  exit 1
fi
echo "== every target ran ${seconds}s without a crash: $(echo $targets)" >&2
