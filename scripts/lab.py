"""Open the book's chapters in JupyterLab, with this project's environment as the kernel.

    make lab                   # the chapters take the parameters of the last `make book` (its profile)
    make lab PROFILE=quick     # or name the profile
    make lab LAB_ARGS="--port 8890 --token SECRET --no-browser"   # other --Class.option=value go to JupyterLab

The kernel gets the environment the book runner gives its notebooks (quiet TensorFlow, oneDNN on, fixed hashing)
and ``BOOK_PROFILE``: a chapter whose parameters cell still holds the default profile takes that profile's values,
except those you edited (helpers.book.notebook.apply_lab_profile). Results go to the same data/ folder as `make book`;
the next `make book` re-executes every chapter whose results a Lab run changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from helpers.book.notebook import LAB_PROFILE_ENV  # noqa: E402
from helpers.book.profiles import PROFILE_NAMES  # noqa: E402
from helpers.core import io  # noqa: E402
from helpers.studies import results  # noqa: E402


def built_profile() -> str | None:
    """The profile of the last `make book` (its run log), or None when nothing was built yet."""
    try:
        return io.read_json(results.RUN_LOG.path).get("profile")
    except (OSError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="quick | default (default: the profile of the last make book)")
    parser.add_argument("--port", type=int, default=8888, help="the server's port on --ip (default 8888)")
    parser.add_argument("--ip", default="127.0.0.1", help="the address to serve on (default 127.0.0.1, this machine only)")
    parser.add_argument("--token", default=None, help="the access token (default: JupyterLab makes one and prints it)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args, extra = parser.parse_known_args()  # anything else goes to JupyterLab as it is (--LabApp.x=y)
    built = built_profile()
    profile = args.profile or built or "default"
    if profile not in PROFILE_NAMES or profile == "paper":
        raise SystemExit(f"error: --profile: expected quick or default, got {profile!r}")
    if not 0 < args.port < 65536:
        raise SystemExit(f"error: --port: expected 1-65535, got {args.port}")
    if built is None:
        print("note: no `make book` yet: a chapter that reads another chapter's results will say which to run first")
    elif built != profile:
        print(f"note: data/ holds a {built} build; chapters opened now take the {profile} profile's parameters, and the "
              "next `make book` re-executes those whose results change")
    print(f"JupyterLab on the chapters in notebooks/, profile {profile}; stop it with Ctrl-C", flush=True)

    from run_book import notebook_environment

    env = notebook_environment() | {LAB_PROFILE_ENV: profile}
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", f"--ServerApp.ip={args.ip}",
               f"--ServerApp.port={args.port}", "--ServerApp.port_retries=0", "--ServerApp.default_url=/lab/tree/notebooks",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if args.token is not None:
        command.append(f"--IdentityProvider.token={args.token}")
    if args.no_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:  # containers and CI machines run as root; JupyterLab refuses that unless told
        command.append("--allow-root")
    command += extra
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
