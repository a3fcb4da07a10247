"""Cnn14 matches the official checkpoint layout and the librosa front end it was trained with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiosearch.embedder.cnn14 import Cnn14, mel_filterbank, periodic_hann
from audiosearch.embedder.engine import untrained_cnn14

# From qiuqiangkong/audioset_tagging_cnn pytorch/models.py (Cnn14) with torchlibrosa's Spectrogram and
# LogmelFilterBank at sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, classes_num=527.
CONV_BLOCK_CHANNELS = {
    1: (1, 64),
    2: (64, 128),
    3: (128, 256),
    4: (256, 512),
    5: (512, 1024),
    6: (1024, 2048),
}
OFFICIAL_TOP_LEVEL = {
    "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
    "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
    "logmel_extractor.melW": (513, 64),
    "bn0.weight": (64,),
    "bn0.bias": (64,),
    "bn0.running_mean": (64,),
    "bn0.running_var": (64,),
    "bn0.num_batches_tracked": (),
    "fc1.weight": (2048, 2048),
    "fc1.bias": (2048,),
    "fc_audioset.weight": (527, 2048),
    "fc_audioset.bias": (527,),
}
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def official_layout() -> dict[str, tuple[int, ...]]:
    layout = dict(OFFICIAL_TOP_LEVEL)
    for index, (cin, cout) in CONV_BLOCK_CHANNELS.items():
        layout[f"conv_block{index}.conv1.weight"] = (cout, cin, 3, 3)
        layout[f"conv_block{index}.conv2.weight"] = (cout, cout, 3, 3)
        for bn in ("bn1", "bn2"):
            for suffix in BN_SUFFIXES:
                layout[f"conv_block{index}.{bn}.{suffix}"] = (
                    () if suffix == "num_batches_tracked" else (cout,)
                )
    return layout


def test_state_dict_has_exactly_the_official_keys_and_shapes() -> None:
    state = Cnn14().state_dict()

    assert {key: tuple(value.shape) for key, value in state.items()} == official_layout()
    assert len(state) == 84


def test_mel_filterbank_matches_librosa_slaney() -> None:
    # Reference values: librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    weights = mel_filterbank(32000, 1024, 64, 50.0, 14000.0)

    assert weights.shape == (513, 64)
    np.testing.assert_allclose(
        weights.sum(axis=0)[[0, 10, 32, 63]], [0.03120387, 0.03120387, 0.03193078, 0.03199378], rtol=1e-5
    )
    peaks = {0: (3, 0.015011813), 10: (21, 0.014263462), 32: (75, 0.006808531), 63: (424, 0.001341212)}
    for band, (bin_index, value) in peaks.items():
        assert int(weights[:, band].argmax()) == bin_index
        assert weights[bin_index, band] == pytest.approx(value, rel=1e-5)
    for band, (first, last) in {0: (2, 5), 63: (401, 447)}.items():
        nonzero = np.nonzero(weights[:, band])[0]
        assert (nonzero[0], nonzero[-1]) == (first, last)


def test_conv_stft_power_equals_numpy_rfft_of_hann_frames() -> None:
    signal = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    padded = np.pad(signal.astype(np.float64), 512, mode="reflect")
    frames = np.stack([padded[start : start + 1024] for start in range(0, padded.size - 1023, 320)])
    expected = np.abs(np.fft.rfft(frames * periodic_hann(1024), axis=1)) ** 2

    with torch.inference_mode():
        power = Cnn14().spectrogram_extractor(torch.from_numpy(signal)[None])[0].numpy()

    assert power.shape == expected.shape == (26, 513)
    np.testing.assert_allclose(power, expected, rtol=1e-3, atol=1e-2)


def test_fft_spectrogram_equals_the_conv_one_and_is_used_only_while_the_kernels_are_the_dft() -> None:
    model = Cnn14().eval()
    waveforms = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 64000)).astype(np.float32))
    with torch.inference_mode():
        by_conv = model.spectrogram_extractor(waveforms)
        assert model.use_fft_stft()
        by_fft = model.spectrogram_extractor(waveforms)

    assert by_fft.shape == by_conv.shape == (3, 201, 513)
    torch.testing.assert_close(by_fft, by_conv, rtol=1e-3, atol=1e-2)
    with torch.no_grad():
        model.spectrogram_extractor.stft.conv_real.weight[5, 0, 100] += 0.01
    assert not model.use_fft_stft()


def test_forward_gives_a_relu_embedding_and_sigmoid_tags() -> None:
    model = untrained_cnn14(seed=0).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 32000) * 0.1)

    assert out.embedding.shape == (2, 2048)
    assert out.clipwise.shape == (2, 527)
    assert bool((out.embedding >= 0).all())
    assert bool(((out.clipwise > 0) & (out.clipwise < 1)).all())


def test_same_seed_gives_identical_weights_and_another_seed_different_ones() -> None:
    first = untrained_cnn14(7).state_dict()
    again = untrained_cnn14(7).state_dict()
    other = untrained_cnn14(8).state_dict()

    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])
