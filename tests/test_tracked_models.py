"""rnn, vae and gan on datasets with tracks (#22; docs/models.md "Tracks"): the numpy sampler's
joint frame, the exact likelihood over tracks, the merged model unchanged, and a tiny model
trained, scored and generating on a four-voice dataset."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import mido
import numpy as np
import pytest
from test_tracks import SATB, SATB_PITCHES, _encode, four_part_file

from musicflow.core import frames, tracks
from musicflow.core.compose import Direction, check_tracks
from musicflow.core.errors import ModelError, UsageError
from musicflow.models import frame_sampler
from musicflow.models.frame_sampler import FrameSampler, array_names

P = 96
W = 3 * P + 2 * (P + 1)  # one track's output row
NEVER = -60.0  # a logit whose choice never happens in a test's draws


def specs(k: int) -> list[dict]:
    return [
        {"name": f"V{i}", "program": 40 + i, "channel": tracks.output_channel(i), "drums": False}
        for i in range(k)
    ]


def silent_row() -> np.ndarray:
    """An output row that plays nothing: no onset likely, 0 held, 0 new notes."""
    counts = np.full(P + 1, NEVER)
    row = np.concatenate([np.tile([0.0, NEVER, 0.0], P), counts, counts])
    row[3 * P] = row[3 * P + P + 1] = 0.0  # held count 0, new count 0
    return row


# --- unit: the numpy sampler -------------------------------------------------------------


def test_one_track_frame_input_is_onsets_then_holds_and_tracks_follow_each_other() -> None:
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 3, (5, 2, P)).astype(np.int8)
    position, cond = np.eye(16, dtype=np.float32)[3], rng.random((5, 4)).astype(np.float32)
    one = frame_sampler._frame_input(prev[:, 0], position, cond)
    on, hold = prev == frames.ONSET, prev == frames.HOLD
    assert np.array_equal(one[:, :P], on[:, 0]) and np.array_equal(one[:, P : 2 * P], hold[:, 0])
    assert np.array_equal(one[:, 2 * P :], np.concatenate([np.tile(position, (5, 1)), cond], 1))
    two = frame_sampler._frame_input(prev, position, cond)
    expected = np.concatenate([on[:, 0], hold[:, 0], on[:, 1], hold[:, 1]], axis=1)
    assert np.array_equal(two[:, : 4 * P], expected)


def test_a_track_reads_what_the_tracks_before_it_drew_in_the_same_frame() -> None:
    """Track 1 plays pitch 50 exactly when track 0 drew pitch 40 in this frame (its head reads
    track 0's fresh onset bits); track 0 draws it half the time."""
    hidden, n = 4, 4000
    row0 = silent_row()
    row0[3 * 40 + 1] = 0.0  # pitch 40: the only onset track 0 can take
    row0[3 * P + P + 1 + 1] = 0.0  # new count 1 as likely as 0
    row1 = silent_row()
    row1[3 * 50 + 1] = 0.0
    kernel1 = np.zeros((hidden + 2 * P, W))
    kernel1[hidden + 40, 3 * P + P + 1 + 1] = 2 * -NEVER  # track 0's onset at 40 → one new note
    kernel1[hidden + 40, 3 * P + P + 1] = 2 * NEVER  # … and not none
    heads = [(np.zeros((hidden, W)), row0), (kernel1, row1)]
    links = [np.zeros((P + 1, P + 1))] * 2
    u = np.random.default_rng(1).random((n, 2 * (2 + 2 * P)))
    y = np.zeros((n, hidden), np.float32)
    cur = frame_sampler._sample_tracks(y, heads, links, np.zeros((n, 2, P), np.int8), u, 1.0)
    first = cur[:, 0, 40] == frames.ONSET
    assert np.array_equal(first, cur[:, 1, 50] == frames.ONSET)
    assert 0.45 < first.mean() < 0.55
    assert (cur != frames.OFF).sum() == 2 * first.sum()  # nothing else sounds


def _sampler(rows: list[np.ndarray], hidden: int = 4) -> FrameSampler:
    """A FrameSampler of len(rows) tracks whose heads give ``rows`` whatever they read."""
    config = {
        "frame_steps": 3,
        "layers": 1,
        "key_normalize": False,
        "temperature": 1.0,
        "pitch_low": 21,
        "tracks": specs(len(rows)),
    }
    k = len(rows)
    arrays = {
        "key_prior.counts": np.ones(12, np.float32),
        "lstm0.kernel": np.zeros((2 * P * k + 16, 4 * hidden), np.float32),
        "lstm0.recurrent_kernel": np.zeros((hidden, 4 * hidden), np.float32),
        "lstm0.bias": np.zeros(4 * hidden, np.float32),
    }
    for i, row in enumerate(rows):
        name = frame_sampler.head_name(i)
        arrays[f"{name}.kernel"] = np.zeros((hidden + 2 * P * i, W), np.float32)
        arrays[f"{name}.bias"] = row.astype(np.float32)
        arrays[f"{frame_sampler.link_name(i)}.kernel"] = np.zeros((P + 1, P + 1), np.float32)
    assert sorted(arrays) == sorted(array_names(config))
    return FrameSampler("rnn", config, arrays)


def test_a_rest_is_counted_over_all_tracks() -> None:
    """Track 0 almost never plays. While track 1 plays, no bar is silent and nothing forces
    track 0; when track 1 rests too, a rest of every track ends within a bar, on track 0."""
    quiet = silent_row()
    quiet[3 * 60 + 1] = 0.0  # pitch 60, if it must
    quiet[3 * P + P + 1 + 1] = -30.0  # one new note only if it must
    busy = silent_row()
    busy[3 * 64 + 1] = 0.0
    busy[3 * P + P + 1 + 1] = 5.0  # a new note nearly every frame
    sampler = _sampler([quiet, busy])
    song = sampler.direct_tracks(3, 4, seed=0)  # (3, 2, 96, 4 bars · 48)
    assert song.shape == (3, 2, P, 4 * 48)
    assert song[:, 0].sum() == 0
    assert song[:, 1].reshape(3, P, 4, 48).any(axis=(1, 3)).all()  # no silent bar

    song = _sampler([quiet, quiet]).direct_tracks(3, 4, seed=0)
    assert song[:, 1].sum() == 0
    onsets = np.flatnonzero(song[0, 0].any(axis=0)[::3])  # frames where track 0 sounds
    assert len(onsets) >= 4 and np.diff(onsets).max() <= 16


def test_tracked_pieces_lay_over_into_the_merged_ones() -> None:
    row = silent_row()
    row[3 * 50 + 1] = row[3 * 55 + 1] = 0.0
    row[3 * P + P + 1 + 1] = 1.0
    sampler = _sampler([row, row, row])
    tracked = sampler.sample_track_pieces(2, 2, seed=3)
    assert tracked.shape == (2, 2, 3, P, P) and tracked.dtype == np.float32
    assert np.array_equal(sampler.sample_pieces(2, 2, seed=3), tracked.max(axis=2))
    assert np.array_equal(sampler.direct(2, 2, 3), sampler.direct_tracks(2, 2, 3).max(axis=1))
    with pytest.raises(ModelError, match=r"its prompt must be \(3, 96, T\)"):
        sampler.direct(1, 1, 0, prompt=np.zeros((P, 48), bool))
    with pytest.raises(ModelError, match="3 tracks cannot interpolate"):
        sampler.direct(1, 1, 0, ends=(np.zeros((P, 48), bool), np.zeros((P, 48), bool)))


def test_a_prompt_with_tracks_is_read_as_the_model_plays_it(tmp_path: Path) -> None:
    """A four-part prompt keeps its parts (each a roll, merged = their union); a prompt with
    another number of voices is a usage error; the sampler reads each part into its track."""
    from musicflow.core.compose import read_prompt

    four_part_file(tmp_path / "p.mid", shift=2)
    data = (tmp_path / "p.mid").read_bytes()
    prompt = read_prompt(data, "p.mid", 21, policy=tracks.VOICES, n_tracks=4)
    parts = prompt.first_track_bars(prompt.bars)
    assert parts.shape == (4, P, 4 * 48) and prompt.bars == 4
    assert np.array_equal(prompt.first_bars(4), parts.any(axis=0))
    assert [np.flatnonzero(p[:, 0])[0] for p in parts] == [
        95 - (p[0] + 2 - 21) for p in SATB_PITCHES
    ]
    assert read_prompt(data, "p.mid", 21).parts is None
    with pytest.raises(UsageError, match="has 4 voices and the model plays 3"):
        read_prompt(data, "p.mid", 21, policy=tracks.VOICES, n_tracks=3)

    row = silent_row()
    row[3 * P + 1] = 5.0  # holding one note is likely: the note the prompt left sounding
    sampler = _sampler([row] * 4)
    song = sampler.direct_tracks(20, 1, seed=0, prompt=parts[:, :, :96])
    assert song.shape == (20, 4, P, 48)  # what follows the prompt's two bars
    last = [95 - (p[3] + 2 - 21) for p in SATB_PITCHES]  # each part's note at the seam
    held = song[:, [0, 1, 2, 3], last, 0]  # (20, 4): each track holds its own part's note
    assert held.mean() > 0.9 and song[:, :, :, 0].sum() == held.sum()


def test_models_that_take_tracks_and_what_generate_refuses() -> None:
    able = [m for m in ("rnn", "vae", "gan", "vae-thesis", "gan-thesis") if tracks.takes_tracks(m)]
    assert able == ["rnn", "vae", "gan"]
    assert tracks.refusal("vae-thesis") == (
        "model vae-thesis cannot take tracks (only gan, rnn, vae can); encode with --tracks merged"
    )
    assert tracks.track_count({"pitch_low": 21}) == 1
    assert tracks.track_count({"tracks": specs(4)}) == 4
    check_tracks("vae", 1, Direction(bars=4, end_names=("a.mid", "b.mid")))  # merged: fine
    check_tracks("rnn", 4, Direction(bars=4, prompt_name="a.mid"))  # read with its tracks
    with pytest.raises(UsageError, match="trained on 2 tracks cannot interpolate"):
        check_tracks("vae", 2, Direction(bars=4, end_names=("a.mid", "b.mid")))


# --- integration: the Keras models -------------------------------------------------------


@pytest.mark.integration
def test_one_track_is_the_merged_model_layer_for_layer() -> None:
    """A dataset of one voice builds exactly the merged model: no new layer, same weights."""
    from musicflow.models import build_model

    vae = {"hidden": 8, "latent_dim": 2, "enc_filters": [4]}
    for name, small in (("rnn", {"hidden": 8}), ("vae", vae)):
        merged = build_model(name, seed=2, **small)
        one = build_model(name, seed=2, tracks=specs(1), **small)
        kinds = [type(x).__name__ for x in merged.decoder.layers]
        assert [type(x).__name__ for x in one.decoder.layers] == kinds
        assert not any(x.name.startswith(("out_", "before_", "heads")) for x in one.decoder.layers)
        a, b = merged.sampler_arrays(), one.sampler_arrays()
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _two_track_model(rng: np.random.Generator):
    """A 2-track rnn whose first frame has few possible outcomes: two candidate pitches per
    track, at most two new notes; track 1's odds and counts depend on track 0's onsets."""
    from musicflow.models import build_model

    model = build_model("rnn", seed=0, hidden=8, key_normalize=False, tracks=specs(2))
    for k, layer in enumerate((model.decoder.get_layer("out"), model.decoder.get_layer("out_1"))):
        kernel, _ = layer.get_weights()
        kernel[:] = 0.0
        bias = silent_row()
        for pitch in (40, 47):
            bias[3 * pitch + 1] = rng.normal()
        bias[3 * P + P + 1 : 3 * P + P + 4] = rng.normal(0, 1, 3)  # 0, 1 or 2 new notes
        if k == 1:  # rows 8 + p: track 0's onset bit of pitch p
            for pitch in (40, 47):
                kernel[8 + pitch, [3 * 40 + 1, 3 * 47 + 1]] = rng.normal(0, 2, 2)
                kernel[8 + pitch, 3 * P + P + 1 : 3 * P + P + 4] = rng.normal(0, 2, 3)
        layer.set_weights([kernel, bias.astype(np.float32)])
    for link in model.links:
        link.set_weights([np.zeros((P + 1, P + 1), np.float32)])
    return model


@pytest.mark.integration
def test_the_joint_frame_likelihood_is_exact_and_the_numpy_sampler_draws_it() -> None:
    """Every joint first frame of two tracks gets its exact probability from the Keras model
    (the sum over tracks of each head's exact NLL given the tracks before it); they sum to 1,
    and the numpy sampler draws each as often."""
    model = _two_track_model(np.random.default_rng(4))
    subsets = [s for r in range(3) for s in itertools.combinations((40, 47), r)]
    joint = list(itertools.product(subsets, repeat=2))
    songs = np.zeros((len(joint), 2, P, 3), np.float32)  # one frame of 3 steps
    for i, pair in enumerate(joint):
        for k, chosen in enumerate(pair):
            for pitch in chosen:
                songs[i, k, P - 1 - pitch] = 1.0  # row 95 − p: pitches low → high in states
    nll = model.sequence_nll(songs)
    prob = np.exp(-nll)
    assert abs(prob.sum() - 1.0) < 1e-3

    # the sum over tracks: each track's own exact NLL of that frame, given the first's
    import tensorflow as tf

    onset, hold = model._states(tf.constant(songs.transpose(0, 2, 3, 1)))
    heads = model._heads(onset, hold, None, False)
    parts = [model._exact_nll(onset[:, :, k], hold[:, :, k], heads[k]).numpy() for k in (0, 1)]
    assert np.allclose(parts[0] + parts[1], nll, atol=1e-4)
    # track 1's part depends on what track 0 plays in the same frame
    assert np.ptp(parts[1][[i for i, (_, b) in enumerate(joint) if b == (40,)]]) > 0.1

    sampler = model.sampler()
    n = 20000
    u = np.random.default_rng(5).random((n, 1, 2 * (2 + 2 * P)))
    drawn = sampler._carry(np.zeros((n, 1, 0), np.float32), np.zeros((n, 0, 2, P), np.int8), u, 1.0)
    assert (drawn != frames.HOLD).all()
    index = {pair: i for i, pair in enumerate(joint)}
    keys = [
        tuple(tuple(int(p) for p in np.flatnonzero(frame[k] == frames.ONSET)) for k in (0, 1))
        for frame in drawn[:, 0]
    ]
    counts = np.bincount([index[key] for key in keys], minlength=len(joint))
    assert np.abs(counts / n - prob).max() < 0.015


@pytest.mark.integration
def test_the_numpy_heads_are_the_keras_heads_and_no_track_sees_itself() -> None:
    import tensorflow as tf

    from musicflow.models import build_model
    from musicflow.models.sequence import frame_bits

    model = build_model("rnn", seed=1, hidden=8, tracks=specs(3))
    rng = np.random.default_rng(0)
    states = rng.choice(3, (2, 12, 3, P), p=[0.9, 0.05, 0.05]).astype(np.int8)
    cond = np.repeat(np.eye(12, dtype=np.float32)[[3, 7]][:, None], 12, axis=1)
    onset = tf.constant((states == frames.ONSET).astype(np.float32))
    hold = tf.constant((states == frames.HOLD).astype(np.float32))

    def keras_rows(onset, hold) -> np.ndarray:
        bits = frame_bits(onset, hold)
        out = model.decoder([model._inputs(bits), tf.constant(cond), bits], training=False)
        return out.numpy().reshape(2, 12, 3, W)

    rows = keras_rows(onset, hold)
    assert np.allclose(model.sampler().head_rows(states, cond), rows, atol=1e-4)
    # this frame's bits of track 2 reach no head; track 0's reach tracks 1 and 2
    flipped = keras_rows(onset, tf.concat([hold[:, :, :2], 1.0 - hold[:, :, 2:]], axis=2))
    assert np.allclose(flipped[:, 0], rows[:, 0]) and not np.allclose(flipped[:, 1:], rows[:, 1:])
    changed = np.abs(flipped - rows).max(axis=(0, 3))  # (F, K): frames after the first differ
    assert (changed[0] == 0).all()
    flipped0 = keras_rows(tf.concat([1.0 - onset[:, :, :1], onset[:, :, 1:]], axis=2), hold)
    assert np.allclose(flipped0[:, 0, 0], rows[:, 0, 0])
    assert not np.allclose(flipped0[:, 0, 1], rows[:, 0, 1])


@pytest.mark.integration  # encode flow (Prefect), TensorFlow
@pytest.mark.parametrize("name", ["rnn", "vae", "gan"])
def test_a_tiny_model_trains_scores_and_writes_four_named_tracks(
    name: str, tmp_path: Path, workspace_home: Path
) -> None:
    from musicflow.adapters.store import read_dataset
    from musicflow.core.sampling import write_settings
    from musicflow.models import build_model, load_model
    from musicflow.models.data import heldout_split, load_windows, validation_split
    from musicflow.tasks.evaluate import EvaluationWindows, evaluate_model
    from musicflow.tasks.generate import RollSampler, generate_midi
    from musicflow.tasks.train import training_data

    source = tmp_path / "chorales"
    source.mkdir()
    for i in range(8):
        four_part_file(source / f"c{i}.mid", shift=i - 3)
    info = read_dataset(_encode(source, tracks.VOICES, "satb"))
    assert tracks.track_count(info.encoding) == 4
    small = {"hidden": 16, "batch_size": 8, "tracks": info.encoding["tracks"]}
    if name != "rnn":
        small |= {"latent_dim": 4, "enc_filters": [8, 8]}
    if name == "gan":  # its second phase: a GAN over the codes of the tracked windows
        small |= {"actor_layers": [8], "critic_layers": [8], "prior_steps": 10}
    model = build_model(name, seed=0, **small)
    train_shas, heldout_shas = heldout_split(info.shard_paths)
    fit, val = validation_split(train_shas)
    train_ds, val_ds = training_data(model.config, info.shard_paths, fit, val, seed=0, tracks=4)
    first = model.fit_epoch(train_ds)
    for _ in range(7):
        last = model.fit_epoch(train_ds)
    assert last["loss"] < first["loss"]
    assert np.isfinite(model.validate(val_ds)["val_nll"])
    if name == "gan":
        assert model.fit_prior(train_ds, val_ds, None)["prior_steps_done"] > 0

    heldout = load_windows(info.shard_paths, heldout_shas, tracks=4)
    assert heldout.shape[1:] == (4, P, P) and heldout.any()
    evaluation, windows = evaluate_model(model, info, seed=0, n_generated=8)  # one piece
    assert windows.generated_tracks.shape == (8, 4, P, P)
    assert np.array_equal(windows.generated, windows.generated_tracks.any(axis=1))
    assert np.array_equal(windows.heldout, windows.heldout_tracks.any(axis=1))
    assert "onenn_accuracy" in evaluation.scores
    assert "tracks.voice_crossing_rate" in evaluation.scores  # the track metrics, logged too
    assert "track.3.in_range_rate" in evaluation.scores
    assert name == "gan" or np.isfinite(evaluation.scores["heldout_nll"])  # a GAN has none
    windows.save(tmp_path / "windows.npz")
    back = EvaluationWindows.load(tmp_path / "windows.npz")
    assert np.array_equal(back.heldout_tracks, windows.heldout_tracks)

    folder = tmp_path / "model"
    model.save(folder)
    saved, loaded = model.sampler_arrays(), load_model(folder).sampler_arrays()
    assert saved.keys() == loaded.keys()
    assert all(np.array_equal(saved[k], loaded[k]) for k in saved)
    write_settings(
        folder, threshold=0.5, encoding=info.encoding, dataset="satb", target_density=0.01
    )
    sampler = RollSampler().load_dir(folder)
    if name == "gan":
        return  # samples as the vae does (its codes through the generator)
    if name == "vae":
        # a four-part prompt continued: each part's notes open its own track, and the VAE
        # encodes the prompt's windows with their tracks
        from musicflow.core.compose import read_prompt

        data = (source / "c0.mid").read_bytes()
        prompt = read_prompt(data, "c0.mid", 21, policy=tracks.VOICES, n_tracks=4)
        direction = Direction(bars=2, prompt=prompt, prompt_name="c0.mid", prompt_bars=2)
        result = generate_midi(
            "test", n=1, out_dir=tmp_path, sampler=sampler, audio_preview=False, direction=direction
        )
        midi = mido.MidiFile(result.midi_files[0])
        assert [m.text for m in midi.tracks[0] if m.type == "marker"] == ["continuation"]
        for track, part in zip(midi.tracks[1:], SATB_PITCHES, strict=True):
            pitches = [m.note for m in track if m.type == "note_on" and m.velocity > 0]
            assert pitches[:8] == [p - 3 for p in part * 2]  # c0 (shift -3): 2 bars, 4 a bar
        return
    result = generate_midi(
        "test",
        n=2,
        out_dir=tmp_path / "out",
        sampler=sampler,
        audio_preview=False,
        direction=Direction(bars=8),
    )
    for path, song in zip(result.midi_files, result.songs, strict=True):
        midi = mido.MidiFile(path)
        named = [
            (
                next(m.name for m in t if m.type == "track_name"),
                {m.channel for m in t if hasattr(m, "channel")},
                {m.program for m in t if m.type == "program_change"},
            )
            for t in midi.tracks[1:]
        ]
        expected = [(s["name"], {s["channel"]}, {s["program"]}) for s in info.encoding["tracks"]]
        assert named == expected and [n for n, _, _ in named] == list(SATB)
        assert [c for _, c, _ in named] == [{0}, {1}, {2}, {3}] and song.any()
        # the score: a named staff per voice, holding that voice's notes
        xml = ET.fromstring(path.with_suffix(".musicxml").read_text().split("\n", 2)[2])
        assert [p.text for p in xml.iter("part-name")] == list(SATB)
        for part, track in zip(xml.iter("part"), midi.tracks[1:], strict=True):
            struck = sum(m.type == "note_on" and m.velocity > 0 for m in track)
            written = [n for n in part.iter("note") if n.find("pitch") is not None]
            assert struck == sum(n.find("tie[@type='stop']") is None for n in written)


@pytest.mark.integration
def test_key_normalisation_moves_the_pitched_tracks_together_and_leaves_the_drums() -> None:
    """The tonic is read from the pitched tracks laid over each other; every pitched track
    moves by the same shift, in Keras and in numpy; the drum track (rows = drum keys) stays."""
    import tensorflow as tf

    from musicflow.models import build_model

    band = [dict(s, drums=i == 0) for i, s in enumerate(specs(3))]
    model = build_model("rnn", seed=0, hidden=8, tracks=band)
    x = np.zeros((1, 3, P, P), bool)
    x[0, 0, 50, :] = True  # a drum key held through
    for step, pitch in enumerate((62, 64, 66, 67, 69, 71, 73, 74)):  # D major, split in two
        x[0, 1 + step % 2, 95 - (pitch - 21), 12 * step : 12 * step + 6] = True
    moved, tonic = model._prepare(tf.constant(model._as_input(x)), training=False)
    assert int(np.argmax(tonic.numpy()[0])) == 2  # D
    moved = moved.numpy()[0].transpose(2, 0, 1) > 0.5  # (K, 96, 96)
    assert np.array_equal(moved[0], x[0, 0])  # the drums stay
    assert np.array_equal(moved[1:], np.roll(x[0, 1:], 2, axis=1))  # D → C: two rows lower
    sampler = model.sampler()
    shift = frames.key_shifts(sampler.tonics_of(sampler._merged(x)))
    assert np.array_equal(sampler._move(x, shift)[0], moved)
