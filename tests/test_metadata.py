"""NIH's metadata files → typed rows, for every header variant in the wild, with errors naming file and line."""

from __future__ import annotations

import gzip
import shutil

import pytest

from nih_chestxray14.errors import MetadataError, MissingMetadataError
from nih_chestxray14.labels import UnknownFindingError
from nih_chestxray14.metadata import (
    BoundingBox,
    read_boxes,
    read_entries,
    read_release_metadata,
    read_split_list,
)
from nih_chestxray14.sample import CSV_VARIANTS, make_release
from release_fixtures import needs_real_metadata, real_metadata_dir

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
ROW = "00000001_000.png,Cardiomegaly|Emphysema,0,1,57,M,PA,2682,2749,0.143,0.143"


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("variant", CSV_VARIANTS)
def test_every_header_variant_of_a_sample_release_parses_to_the_same_rows(variant, tmp_path):
    reference = make_release(tmp_path / "v2020", num_patients=6, images_per_patient=2, image_size=16)
    release = make_release(tmp_path / variant, num_patients=6, images_per_patient=2, image_size=16, csv_variant=variant)
    expected = read_release_metadata(str(reference)).entries
    found = read_release_metadata(str(release)).entries
    assert list(found) == list(expected)
    for name, row in found.items():
        if variant == "2017" and row.age != expected[name].age:
            assert row.age > 400  # the older file's implausible ages pass through
            row = type(row)(**{**row.__dict__, "age": expected[name].age})
        assert row == expected[name]


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        HEADER.replace("Patient Gender", "Patient Sex"),
        HEADER + ",",  # trailing comma: an empty 12th column
        HEADER.replace(",", " , "),  # padded cells
    ],
)
def test_header_variants_parse_one_row_exactly(header, tmp_path):
    trailing = "," if header.endswith(",") else ""
    (row,) = read_entries(write(tmp_path / "Data_Entry_2017.csv", f"{header}\n{ROW}{trailing}\n")).values()
    assert row.image_id == "00000001_000.png"
    assert row.findings == ("Cardiomegaly", "Emphysema")
    assert (row.follow_up, row.patient_id, row.age, row.sex, row.view_position) == (0, 1, 57, "M", "PA")
    assert (row.original_width, row.original_height) == (2682, 2749)
    assert row.pixel_spacing_x == row.pixel_spacing_y == pytest.approx(0.143)


def test_no_finding_is_an_empty_tuple_and_ages_with_a_y_suffix_parse(tmp_path):
    text = f"{HEADER}\n" + ROW.replace("Cardiomegaly|Emphysema", "No Finding").replace(",57,", ",057Y,") + "\n"
    (row,) = read_entries(write(tmp_path / "entry.csv", text)).values()
    assert row.findings == () and row.age == 57


def test_gzipped_entry_csv_is_read(tmp_path):
    path = tmp_path / "Data_Entry_2017_v2020.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(f"{HEADER}\n{ROW}\n")
    assert list(read_entries(str(path))) == ["00000001_000.png"]


@pytest.mark.parametrize(
    "row, message",
    [
        (ROW.replace("00000001_000.png", "image1.png"), r"line 2: image name 'image1.png' is not of NIH's form"),
        (ROW.replace(",57,", ",fifty,"), r"line 2: age must be a whole number of years, got 'fifty'"),
        (ROW.replace(",M,", ",X,"), r"line 2: sex must be M or F, got 'X'"),
        (ROW.replace(",PA,", ",LL,"), r"line 2: view position must be PA or AP, got 'LL'"),
        (ROW.replace(",2682,", ",wide,"), r"line 2: original_width must be an integer, got 'wide'"),
        (ROW.replace(",0.143,0.143", ",0.143,small"), r"line 2: pixel_spacing_y must be a number"),
        (ROW.rsplit(",", 3)[0], r"line 2: expected at least 11 columns, found 8"),
        (ROW + "\n" + ROW, r"line 3: image 00000001_000.png appears twice"),
    ],
)
def test_malformed_rows_name_file_and_line(row, message, tmp_path):
    path = write(tmp_path / "Data_Entry_2017_v2020.csv", f"{HEADER}\n{row}\n")
    with pytest.raises(MetadataError, match=r"Data_Entry_2017_v2020\.csv, " + message):
        read_entries(str(path))


def test_unknown_finding_names_file_line_and_image(tmp_path):
    path = write(tmp_path / "entry.csv", f"{HEADER}\n{ROW.replace('Emphysema', 'Emphysem')}\n")
    with pytest.raises(UnknownFindingError, match=r"entry\.csv, line 2 \(00000001_000\.png\): unknown finding 'Emphysem'"):
        read_entries(str(path))


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("", MetadataError, r"is empty"),
        (HEADER + "\n", MetadataError, r"has a header but no rows"),
        ("a,b,c\n1,2,3\n", MetadataError, r"line 1: the header lacks image_id, findings"),
        (b"\xff\xfe\x00garbage", MetadataError, r"not a readable CSV file"),
    ],
)
def test_malformed_files_are_named(text, error, message, tmp_path):
    path = tmp_path / "Data_Entry_2017_v2020.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(error, match=message):
        read_entries(str(path))


def test_split_list_errors_name_file_and_line(tmp_path):
    assert read_split_list(str(write(tmp_path / "ok.txt", "00000001_000.png\n\n00000001_001.png\n"))) == [
        "00000001_000.png", "00000001_001.png",
    ]
    with pytest.raises(MetadataError, match=r"bad\.txt, line 2: 'oops' is not an image name"):
        read_split_list(str(write(tmp_path / "bad.txt", "00000001_000.png\noops\n")))
    with pytest.raises(MetadataError, match=r"twice\.txt, line 2: 00000001_000\.png is listed twice"):
        read_split_list(str(write(tmp_path / "twice.txt", "00000001_000.png\n00000001_000.png\n")))
    with pytest.raises(MissingMetadataError, match=r"absent\.txt not found"):
        read_split_list(str(tmp_path / "absent.txt"))


def test_box_csv_reads_nih_header_and_spelling(tmp_path):
    path = write(
        tmp_path / "BBox_List_2017.csv",
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00013118_008.png,Atelectasis,225.08,547.02,86.78,79.19\n"
        "00013118_008.png,Infiltrate,10,20,30,40,,,\n",
    )
    assert read_boxes(str(path)) == {
        "00013118_008.png": [
            BoundingBox("Atelectasis", 225.08, 547.02, 86.78, 79.19),
            BoundingBox("Infiltration", 10.0, 20.0, 30.0, 40.0),
        ]
    }


@pytest.mark.parametrize(
    "row, error, message",
    [
        ("00013118_008.png,Atelectasis,1,2,3", MetadataError, r"line 2: expected image, finding, x, y, w, h"),
        ("00013118_008.png,Atelectasis,1,2,3,four", MetadataError, r"line 2: x, y, w, h must be numbers"),
        ("00013118_008.png,Lump,1,2,3,4", UnknownFindingError, r"line 2 \(00013118_008\.png\): unknown finding 'Lump'"),
    ],
)
def test_box_csv_errors_name_file_and_line(row, error, message, tmp_path):
    path = write(tmp_path / "BBox_List_2017.csv", f"Image Index,Finding Label,Bbox [x,y,w,h],,,\n{row}\n")
    with pytest.raises(error, match=r"BBox_List_2017\.csv, " + message):
        read_boxes(str(path))


def test_release_without_box_csv_has_no_boxes_and_prefers_the_2020_entry_csv(tmp_path):
    release = make_release(tmp_path / "release", num_patients=4, images_per_patient=1, image_size=16)
    (release / "BBox_List_2017.csv").unlink()
    shutil.copy(release / "Data_Entry_2017_v2020.csv", release / "Data_Entry_2017.csv")
    with open(release / "Data_Entry_2017.csv", "a") as handle:
        handle.write("not,a,row\n")  # would fail if the older file were read
    metadata = read_release_metadata(str(release))
    assert metadata.boxes == {} and metadata.bbox_csv is None
    assert metadata.entry_csv.endswith("Data_Entry_2017_v2020.csv")


def test_no_data_dir_says_what_to_download(tmp_path):
    with pytest.raises(MissingMetadataError, match=r"no data_dir given.*train_val_list\.txt.*nihcc\.app\.box\.com"):
        read_release_metadata(None)
    with pytest.raises(MissingMetadataError, match=r"is not a directory"):
        read_release_metadata(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------------------------
# Impossible values: refused, with the rule named


@pytest.mark.parametrize(
    "row, message",
    [
        (ROW.replace(",0,1,57,", ",0,2,57,"),
         r"line 2: Patient ID 2 differs from patient 00000001 in the file name 00000001_000\.png \(rule: Patient ID "
         r"equals the first 8 digits of Image Index"),
        (ROW.replace(",0,1,57,", ",0,99999999999,57,"),
         r"line 2: patient_id 99999999999 is out of range \(rule: 0 <= patient_id <= 2147483647\)"),
        (ROW.replace(",0,1,57,", ",-1,1,57,"), r"line 2: follow_up -1 is out of range \(rule: 0 <= follow_up"),
        (ROW.replace(",2682,", ",-2682,"), r"line 2: original_width -2682 is out of range \(rule: 1 <= original_width"),
        (ROW.replace(",2749,", ",0,"), r"line 2: original_height 0 is out of range"),
        (ROW.replace(",0.143,0.143", ",nan,0.143"),
         r"line 2: pixel_spacing_x is 'nan' \(rule: a pixel spacing is positive and finite\)"),
        (ROW.replace(",0.143,0.143", ",0.143,-0.1"), r"line 2: pixel_spacing_y is '-0\.1' \(rule"),
        (ROW.replace(",0.143,0.143", ",0.143,inf"), r"line 2: pixel_spacing_y is 'inf' \(rule"),
    ],
)
def test_impossible_entry_values_are_refused_naming_file_line_and_rule(row, message, tmp_path):
    path = write(tmp_path / "Data_Entry_2017_v2020.csv", f"{HEADER}\n{row}\n")
    with pytest.raises(MetadataError, match=r"Data_Entry_2017_v2020\.csv, " + message):
        read_entries(str(path))


def test_a_follow_up_number_that_differs_from_the_file_name_is_kept(tmp_path):
    # NIH's own CSV does this in 24,106 rows: 00000003_001.png has Follow-up # 0.
    text = f"{HEADER}\n" + ROW.replace("00000001_000.png", "00000001_001.png") + "\n"
    (row,) = read_entries(write(tmp_path / "entry.csv", text)).values()
    assert row.image_id == "00000001_001.png" and row.follow_up == 0


@pytest.mark.parametrize(
    "box",
    ["nan,20,30,40", "10,20,nan,40", "10,20,-30,40", "10,20,30,0", "-5,20,30,40", "10,-1,30,40", "10,20,inf,40"],
)
def test_impossible_boxes_are_refused_naming_file_line_and_rule(box, tmp_path):
    path = write(tmp_path / "BBox_List_2017.csv",
                 f"Image Index,Finding Label,Bbox [x,y,w,h],,,\n00013118_008.png,Mass,{box}\n")
    with pytest.raises(MetadataError, match=r"BBox_List_2017\.csv, line 2 \(00013118_008\.png\): box .* is impossible "
                                            r"\(rule: finite numbers, x >= 0, y >= 0, w > 0, h > 0\)"):
        read_boxes(str(path))


@pytest.mark.parametrize("list_name", ["test_list.txt", "train_val_list.txt"])
def test_a_csv_truncated_at_a_line_boundary_is_refused_naming_the_first_missing_rows(list_name, tmp_path):
    release = make_release(tmp_path / "release", num_patients=12, images_per_patient=2, image_size=16)
    csv_path = release / "Data_Entry_2017_v2020.csv"
    listed = (release / list_name).read_text().split()
    lines = csv_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.split(",")[0] not in listed[-3:]]
    csv_path.write_text("".join(kept))  # whole lines gone, as when a download stops between two rows
    with pytest.raises(MetadataError, match=rf"Data_Entry_2017_v2020\.csv has no row for 3 of the {len(listed)} images "
                                            rf"in .*{list_name} \(first: {listed[-3]}, {listed[-2]}, {listed[-1]}\)"):
        read_release_metadata(str(release))


@needs_real_metadata
def test_real_metadata_follow_up_differs_from_the_file_name_in_24106_rows_and_patient_id_never_does():
    entries = read_release_metadata(str(real_metadata_dir())).entries
    assert len(entries) == 112_120
    assert sum(row.follow_up != int(name[9:12]) for name, row in entries.items()) == 24_106
    assert all(row.patient_id == int(name[:8]) for name, row in entries.items())
