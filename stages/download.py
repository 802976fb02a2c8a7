"""DVC stage `download`: the four MNIST files into data/raw, MD5-verified.

The source is $MNIST_DIR when set, else params.yaml's data.local_dir (null: the public mirrors). DVC cannot
see an environment variable, so the stage is always_changed in dvc.yaml: every `dvc repro` verifies the
current source again (a second), and DVC keeps everything downstream while the bytes are the same."""

import os
from pathlib import Path

from mnistbench import data
from mnistbench.cli import exit_on_error, params_of, stage_parser


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    args = parser.parse_args()
    params = params_of(args)
    origin = "MNIST_DIR" if os.environ.get("MNIST_DIR") else "data.local_dir"
    chosen = os.environ.get("MNIST_DIR") or params.data.local_dir
    info = data.fetch_raw(args.out, Path(chosen).expanduser() if chosen else None, origin)
    print(f"MNIST from {info['source']}: 4 files, MD5s verified, in {args.out}")


if __name__ == "__main__":
    main()
