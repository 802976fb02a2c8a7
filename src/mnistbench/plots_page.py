"""The page `dvc plots show` writes, with its JavaScript inlined, so that it renders without internet.

    python -m mnistbench.plots_page        # `make setup` runs it: .dvc/plots/page.html -> .dvc/plots/index.html

DVC's default page loads vega, vega-lite and vega-embed from a CDN, and is blank offline. This takes the
same versions from the npm registry (`npm pack`: the published tarballs, no dependencies installed) and
inlines their browser builds into the project's page; `.dvc/config` points `plots.html_template` at it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mnistbench.files import write_text
from mnistbench.settings import ROOT

# The versions DVC's own page loads (dvc_render.vega.VegaRenderer.SCRIPTS), and their browser builds.
LIBRARIES = {"vega@5.20.2": "package/build/vega.min.js", "vega-lite@5.2.0": "package/build/vega-lite.min.js",
             "vega-embed@6.18.2": "package/build/vega-embed.min.js"}
MARKER = "<!-- VEGA SCRIPTS"


def fetch_scripts(workdir: Path) -> list[str]:
    """The three builds' source, in loading order; raises RuntimeError when npm cannot provide them."""
    try:
        done = subprocess.run(["npm", "pack", "--silent", *LIBRARIES], cwd=workdir, capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"npm is not available ({err})") from None
    if done.returncode != 0:
        raise RuntimeError(f"npm pack failed: {done.stderr.strip()[-300:]}")
    scripts = []
    for tarball, (spec, member) in zip(done.stdout.split(), LIBRARIES.items()):
        with tarfile.open(workdir / tarball) as archive:
            scripts.append(archive.extractfile(member).read().decode())
    return scripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page", type=Path, default=ROOT / ".dvc" / "plots" / "page.html")
    parser.add_argument("--out", type=Path, default=ROOT / ".dvc" / "plots" / "index.html")
    args = parser.parse_args()
    page = args.page.read_text()
    marker = page.index(MARKER)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            inline = "\n".join(f"<script>{source}</script>" for source in fetch_scripts(Path(workdir)))
        note = f"{args.out}: vega, vega-lite and vega-embed inlined; `dvc plots show` renders offline"
    except RuntimeError as err:  # still a working page, online: DVC's own CDN scripts
        inline, note = "{scripts}", f"note: {err}; {args.out} loads vega from a CDN (needs internet to render)"
    write_text(args.out, page[:marker] + inline + page[page.index("-->", marker) + 3:])
    print(note, file=sys.stderr if inline == "{scripts}" else sys.stdout)


if __name__ == "__main__":
    main()
