"""`python -m localkube`: run a local control plane until interrupted, for manual use."""

from __future__ import annotations

import sys
import time

from localkube import ControlPlane, ensure_binaries


def main() -> int:
    bin_dir = ensure_binaries()
    started = time.monotonic()
    with ControlPlane.running(bin_dir) as cp:
        print(f"ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
