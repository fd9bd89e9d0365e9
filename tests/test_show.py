"""show: a grid PNG of the split's images, of the size asked for, titled with each image's findings."""

import numpy as np
import pytest
from PIL import Image

import nih_chestxray14
from nih_chestxray14.__main__ import main
from nih_chestxray14.show import grid_shape, title_of


def test_show_writes_a_png_of_columns_times_cell_size(publish_release, publish_cache, tmp_path, capsys):
    out = tmp_path / "grids" / "train.png"
    code = main(["show", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), "--split", "train",
                 "-n", "5", "--columns", "3", "--cell-size", "96", str(out)])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as grid:
        assert grid.format == "PNG"
        assert grid.size == (3 * 96, 2 * 96)
        pixels = np.asarray(grid.convert("L"), dtype=float)
    assert pixels.std() > 10  # images were drawn, not a blank canvas
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.png"]  # no temporary file left beside it


def test_default_grid_is_square_and_holds_every_image():
    assert grid_shape(16) == (4, 4)
    assert grid_shape(5) == (2, 3)
    assert grid_shape(5, columns=5) == (1, 5)


def test_titles_name_the_image_and_its_findings(publish_release, publish_cache):
    dataset = nih_chestxray14.load("default", split="train", data_dir=str(publish_release),
                                   cache_dir=str(publish_cache))
    names = dataset.features["findings"].feature
    for example in dataset:
        title = title_of(example, names)
        assert title.startswith(example["image_id"] + "\n")
        findings = [names.int2str(i) for i in example["findings"]]
        assert " ".join(title.split("\n")[1:]).replace(", ", ",").split(",") == (findings or ["No Finding"])


@pytest.mark.parametrize("argv, reason", [
    (["-n", "0"], "argument -n/--count: 0 must be at least 1"),
    (["--split", "dev"], "argument --split: invalid choice: 'dev'"),
    (["--cell-size", "8"], "--cell-size 8: use at least 32 pixels per image"),
])
def test_bad_show_arguments_get_one_line(publish_release, publish_cache, tmp_path, capsys, argv, reason):
    out = tmp_path / "grid.png"
    code = main(["show", "--data-dir", str(publish_release), "--cache-dir", str(publish_cache), *argv, str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and reason in err
    assert not out.exists()
