"""`carbon-aware backtest --plot`: the mean savings per policy as a PNG, from the same report `--json` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_sensors.cli import main


def test_backtest_plot_draws_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "savings.png"
    args = ["backtest", "--zone", "DE", "--jobs", "3", "--seed", "1"]
    assert main([*args, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip().endswith(f"wrote {png}")
    with pytest.raises(SystemExit) as refused:  # one output at a time
        main([*args, "--json", "--plot", str(png)])
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing-folder/x.png", "."])
def test_an_unwritable_plot_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    png = tmp_path / where  # a folder that does not exist, or a folder itself
    plan = ["plan", "--zone", "DE", "--duration", "3h", "--deadline", "2023-06-02T06:00Z"]
    backtest = ["backtest", "--zone", "DE", "--jobs", "3"]
    for args in (plan, backtest):
        assert main([*args, "--plot", str(png)]) == 2
        err = capsys.readouterr().err
        assert f"--plot {str(png)!r} cannot be written" in err and "existing folder" in err
