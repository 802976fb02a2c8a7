"""DVC stage `claims`: reports/claims.md, the write-up's claims checked against this run."""

from pathlib import Path

from mnistbench.claims import write_claims
from mnistbench.cli import exit_on_error, stage_parser
from mnistbench.config import load_params


@exit_on_error
def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--reports", type=Path, required=True, help="reports")
    parser.add_argument("--split-summary", type=Path, required=True, help="reports/split.json")
    parser.add_argument("--data", type=Path, required=True, help="data/processed")
    parser.add_argument("--writeup-logs", type=Path, required=True, help="reference/writeup_logs.csv")
    parser.add_argument("--protocol-search", type=Path, required=True, help="reference/protocol_search.md")
    parser.add_argument("--out", type=Path, required=True, help="reports/claims.md")
    args = parser.parse_args()
    params = load_params(*args.params)
    write_claims(params.runs(), args.reports, args.split_summary, args.data,
                 args.writeup_logs, args.protocol_search, args.out, params.data.source())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
