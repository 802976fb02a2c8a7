"""DVC stage `download`: the four IDX files of data.dataset into data/raw, their contents verified.

The source is data.local_dir (`default`: the dataset's own folder; null: the dataset's mirrors); for MNIST,
$MNIST_DIR when set. DVC cannot see an environment variable, so the stage is always_changed in
dvc.yaml: every `dvc repro` verifies the current source again (a second), and DVC keeps everything
downstream while the bytes are the same."""

import os
from pathlib import Path

from mnistbench import data
from mnistbench.cli import exit_on_error, stage_parser
from mnistbench.datasets import DataParams, SplitParams, resolve_source
from mnistbench.params_file import load_sections


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="data/raw")
    args = parser.parse_args()
    params = load_sections(args.params, data=DataParams, split=SplitParams)
    dataset, chosen, origin = params.data.source(), params.data.local_dir, "data.local_dir"
    if dataset.name == "mnist" and os.environ.get("MNIST_DIR"):  # the environment wins over params.yaml
        chosen, origin = os.environ["MNIST_DIR"], "MNIST_DIR"
    elif chosen == "default":
        chosen, origin = dataset.local_dir, f"data.local_dir: default for {dataset.name}"
    # A relative folder is the project's: under DVC's queue the stage runs in a copy below .dvc/tmp/exps.
    info = data.fetch_raw(args.out, dataset, resolve_source(chosen, Path.cwd()) if chosen else None, origin)
    print(f"{dataset.title} from {info['source']}: 4 files, contents verified, in {args.out}")


if __name__ == "__main__":
    main()
