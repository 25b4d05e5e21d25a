from pathlib import Path

import pytest

from retrieval.corpora import (AnnotationError, get_corpus, list_corpora, load_benchmark, load_pairs,
                               read_annotation)
from retrieval.synth import SynthConfig, generate
from encoders.video_text import pre_text

FIXTURES = Path(__file__).parent / "fixtures"


def test_pre_text_matches_the_official_rule():
    assert pre_text("A man's car, (red)!") == "a mans car red"
    assert pre_text("<person> walks in-to the room/hall") == "person walks in to the room hall"
    assert pre_text('He said: "yes"; ok? #1 *star* ~x') == "he said yes ok 1 star x"
    assert pre_text("  many   spaces \n") == "many spaces"
    assert pre_text("one two three four", max_words=2) == "one two"
    with pytest.raises(TypeError, match="caption"):
        pre_text(["not", "a", "string"])


def test_registry_has_the_standard_corpora():
    assert list_corpora("benchmark") == ["anet", "didemo", "events", "lsmdc", "msrvtt", "msvd"]
    assert list_corpora("pretrain") == ["cc3m", "webvid"]
    lens = {n: get_corpus(n).max_txt_len for n in list_corpora()}
    assert lens == {"msrvtt": 32, "didemo": 64, "anet": 150, "lsmdc": 96, "msvd": 64, "webvid": 32, "cc3m": 32,
                    "events": 64}
    assert get_corpus("didemo").trimmed30 and not get_corpus("anet").trimmed30
    assert get_corpus("msrvtt").splits["test"] == "msrvtt_ret_test1k.json"
    with pytest.raises(KeyError, match="unknown corpus 'kinetics'"):
        get_corpus("kinetics")


def test_msrvtt_fixture_train_groups_records_by_video():
    pairs = load_pairs("msrvtt", FIXTURES, "train", media_root="/videos")
    assert len(pairs) == 5 and pairs.num_samples == 3
    assert [p.sample_id for p in pairs.items] == [0, 0, 1, 1, 2]
    assert pairs.items[1].caption == "a car drives on a highway"
    assert pairs.items[0].media == "/videos/video0.mp4"
    bench = load_benchmark("msrvtt", FIXTURES, video_root="/videos")
    assert (len(bench.texts), len(bench.videos)) == (3, 3)
    assert bench.txt2vid == [0, 1, 2] and bench.vid2txt == [[0], [1], [2]]


def test_msvd_fixture_has_several_ground_truths_per_video():
    bench = load_benchmark("msvd", FIXTURES, video_root="/v")
    assert len(bench.videos) == 2 and len(bench.texts) == 5
    assert bench.vid2txt == [[0, 1, 2], [3, 4]] and bench.txt2vid == [0, 0, 0, 1, 1]
    assert bench.videos[0] == "/v/-4wsuPCjDBc_5_15.avi"


@pytest.mark.parametrize("name, sentences", [("didemo", 3), ("anet", 2)])
def test_paragraph_fixtures_join_sentences(name, sentences):
    bench = load_benchmark(name, FIXTURES, video_root="/v")
    assert len(bench.videos) == len(bench.texts) == 2 and bench.vid2txt == [[0], [1]]
    first = bench.texts[0]
    assert first.count(" ") > 5 and "." not in first
    if name == "didemo":
        assert first == "the camera zooms in on the dog the dog runs away a man throws a ball"
        assert bench.trimmed30


def test_lsmdc_and_pretraining_fixtures():
    bench = load_benchmark("lsmdc", FIXTURES, video_root="/v")
    assert len(bench.texts) == len(bench.videos) == 3
    assert bench.texts[1] == "person turns to someone smiling"
    assert bench.videos[0].startswith("/v/1010_TITANIC/")
    web = load_pairs("webvid", FIXTURES, media_root="/w")
    assert len(web) == 2 and web.items[0].media == "/w/000001_000050/1066674784.mp4"
    csv = load_pairs("webvid", anno=FIXTURES / "anno_pretrain" / "webvid_train.csv", media_root="/w")
    assert len(csv) == 3 and csv.num_samples == 3
    assert csv.items[1].media == "/w/006001_006050/5629184.mp4"
    assert csv.items[1].caption == "young happy woman 20s on the beach"
    cc = load_pairs("cc3m", FIXTURES, media_root="/c")
    assert cc.media == "image" and cc.items[0].media == "/c/training/00000001.jpg"


@pytest.mark.parametrize("file, corpus, message", [
    ("missing_caption.json", "msrvtt", "record 1: missing field 'caption'"),
    ("paragraph_as_string.json", "didemo", "record 2: field 'caption' must be a non-empty list of sentences"),
    ("video_not_string.json", "msrvtt", "record 0: field 'video' must be a non-empty string"),
    ("bad_temporal.json", "msrvtt", "record 0: field 'temporal' must be one of"),
    ("webvid_no_name.csv", "webvid", "missing column"),
])
def test_malformed_annotations_name_record_and_field(file, corpus, message):
    with pytest.raises(AnnotationError, match=message) as err:
        read_annotation(FIXTURES / "malformed" / file, get_corpus(corpus))
    assert file in str(err.value)


def test_missing_annotation_file_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="msrvtt_ret_test1k.json"):
        load_benchmark("msrvtt", tmp_path)
    bad = tmp_path / "x.json"
    bad.write_text("[{]")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_annotation(bad, get_corpus("msrvtt"))


def test_every_loader_reads_a_generated_corpus(tmp_path):
    cfg = SynthConfig.tiny(tmp_path)
    generate(cfg, progress=False)
    msvd = load_benchmark("msvd", tmp_path)
    assert len(msvd.videos) == cfg.msvd_test and len(msvd.texts) == cfg.msvd_test * cfg.msvd_captions
    assert all(len(t) == cfg.msvd_captions for t in msvd.vid2txt)
    for name, n in [("msrvtt", cfg.msrvtt_test), ("lsmdc", cfg.lsmdc_test), ("didemo", cfg.didemo_test),
                    ("anet", cfg.anet_val)]:
        bench = load_benchmark(name, tmp_path)
        assert len(bench.videos) == len(bench.texts) == n
        assert all(Path(v).is_file() for v in bench.videos)
        assert all(len(members) == 2 for members in bench.groups.values())
    assert len(load_pairs("webvid", tmp_path)) == cfg.webvid
    assert len(load_pairs("webvid", tmp_path, "train_csv")) == cfg.webvid
    assert load_pairs("webvid", tmp_path).items[0].media == load_pairs("webvid", tmp_path, "train_csv").items[0].media
    assert len(load_pairs("cc3m", tmp_path)) == cfg.cc3m
    assert load_pairs("msvd", tmp_path, "train").num_samples == cfg.msvd_train
    assert len(load_pairs("msvd", tmp_path, "train")) == cfg.msvd_train * cfg.msvd_captions
