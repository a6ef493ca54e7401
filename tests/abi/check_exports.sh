#!/bin/sh
# Every plugin exports exactly one dynamic symbol, the function tsr_plugin_entry.
# Usage: check_exports.sh PLUGIN.so... (missing files are reported and skipped)
if ! command -v nm >/dev/null 2>&1; then
  echo "SKIP: nm not found"
  exit 77
fi
status=0
checked=0
for lib in "$@"; do
  if [ ! -f "$lib" ]; then
    echo "skip (not built): $lib"
    continue
  fi
  symbols=$(nm -D --defined-only "$lib" | awk '{print $2 " " $3}')
  if [ "$symbols" = "T tsr_plugin_entry" ]; then
    echo "ok: $lib"
  else
    echo "FAIL: $lib exports:"
    echo "$symbols"
    status=1
  fi
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "FAIL: no plugin found"; exit 1; }
exit $status
