"""PANNs Cnn14 (Kong et al., 2020) in plain torch.

Module and parameter names follow the official `audioset_tagging_cnn` / `panns_inference` layout exactly, so
the published checkpoint `Cnn14_mAP=0.431.pth` loads with `load_state_dict(strict=True)`. The STFT kernels
(a strided conv1d) and the Slaney mel filterbank are computed here, librosa-compatible, instead of importing
torchlibrosa or librosa, so an untrained model is still a faithful Cnn14 front end; a checkpoint overrides
them anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 32000
WINDOW_SIZE = 1024
HOP_SIZE = 320
MEL_BINS = 64
FMIN = 50.0
FMAX = 14000.0
CLASSES_NUM = 527
EMBEDDING_DIM = 2048
CONV_CHANNELS = (64, 128, 256, 512, 1024, 2048)
AMIN = 1e-10


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of the official Cnn14 state dict with its shape."""
    n_freq = WINDOW_SIZE // 2 + 1
    shapes: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (n_freq, 1, WINDOW_SIZE),
        "spectrogram_extractor.stft.conv_imag.weight": (n_freq, 1, WINDOW_SIZE),
        "logmel_extractor.melW": (n_freq, MEL_BINS),
        **_bn_shapes("bn0", MEL_BINS),
    }
    in_channels = 1
    for index, out_channels in enumerate(CONV_CHANNELS, start=1):
        block = f"conv_block{index}"
        shapes[f"{block}.conv1.weight"] = (out_channels, in_channels, 3, 3)
        shapes[f"{block}.conv2.weight"] = (out_channels, out_channels, 3, 3)
        shapes.update(_bn_shapes(f"{block}.bn1", out_channels))
        shapes.update(_bn_shapes(f"{block}.bn2", out_channels))
        in_channels = out_channels
    shapes.update(
        {
            "fc1.weight": (EMBEDDING_DIM, EMBEDDING_DIM),
            "fc1.bias": (EMBEDDING_DIM,),
            "fc_audioset.weight": (CLASSES_NUM, EMBEDDING_DIM),
            "fc_audioset.bias": (CLASSES_NUM,),
        }
    )
    return shapes


def periodic_hann(length: int) -> np.ndarray:
    """scipy/librosa `get_window('hann', length, fftbins=True)`."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT rows as conv1d weights, each (n_fft // 2 + 1, 1, n_fft): real and imaginary parts."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    t = np.arange(n_fft)[None, :]
    # Reducing k*t modulo n_fft before scaling keeps the angles exact for large products.
    angle = 2.0 * np.pi * ((k * t) % n_fft) / n_fft
    window = periodic_hann(n_fft)[None, :]
    real = (np.cos(angle) * window)[:, None, :]
    imag = (-np.sin(angle) * window)[:, None, :]
    return real.astype(np.float32), imag.astype(np.float32)


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mels = hz / f_sp
    above = hz >= min_log_hz
    mels[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mels


def mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = f_sp * mels
    above = mels >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return hz


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm='slaney'), transposed to (n_fft // 2 + 1, n_mels)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_edges = np.linspace(
        hz_to_mel_slaney(np.array([fmin]))[0], hz_to_mel_slaney(np.array([fmax]))[0], n_mels + 2
    )
    hz_edges = mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


class STFT(nn.Module):
    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, kernel_size=n_fft, stride=hop_length, bias=False)
        real, imag = stft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))
        # Not in the state dict, so checkpoints load strictly; moves with the module between devices.
        self.register_buffer("window", torch.from_numpy(periodic_hann(n_fft).astype(np.float32)), persistent=False)
        self.requires_grad_(False)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) -> real, imag, each (batch, n_fft // 2 + 1, frames); centred, reflect-padded."""
        x = F.pad(waveform[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x), self.conv_imag(x)

    def holds_the_dft(self, tolerance: float = 1e-5) -> bool:
        """Whether the conv kernels are still the windowed DFT (the checkpoint froze them), so an FFT may
        compute the same transform."""
        real, imag = stft_kernels(self.n_fft)
        return all(
            torch.allclose(conv.weight.detach().float().cpu(), torch.from_numpy(expected), rtol=0.0, atol=tolerance)
            for conv, expected in ((self.conv_real, real), (self.conv_imag, imag))
        )

    def fft(self, waveform: torch.Tensor) -> torch.Tensor:
        """The same transform through an FFT: complex (batch, n_fft // 2 + 1, frames)."""
        return torch.stft(waveform, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)


class Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = STFT(n_fft, hop_length)
        self.use_fft = False

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> power spectrogram (batch, frames, n_fft // 2 + 1)."""
        if self.use_fft:
            spectrum = self.stft.fft(waveform)
            return (spectrum.real.square() + spectrum.imag.square()).transpose(1, 2)
        real, imag = self.stft(waveform)
        return (real.square() + imag.square()).transpose(1, 2)


class LogmelFilterBank(nn.Module):
    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        self.melW = nn.Parameter(
            torch.from_numpy(mel_filterbank(sr, n_fft, n_mels, fmin, fmax)), requires_grad=False
        )

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram (..., n_freq) -> log-mel in dB (ref=1.0, amin=1e-10, no top_db)."""
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=AMIN))


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: bool) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=2) if pool else x


@dataclass(frozen=True)
class Cnn14Output:
    embedding: torch.Tensor  # (batch, 2048): relu(fc1), before any centering
    clipwise: torch.Tensor  # (batch, 527): sigmoid AudioSet tag probabilities


class Cnn14(nn.Module):
    """Inference-only Cnn14 (no SpecAugment, mixup or dropout: they are identities in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram_extractor = Spectrogram(WINDOW_SIZE, HOP_SIZE)
        self.logmel_extractor = LogmelFilterBank(SAMPLE_RATE, WINDOW_SIZE, MEL_BINS, FMIN, FMAX)
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        in_channels = 1
        for index, out_channels in enumerate(CONV_CHANNELS, start=1):
            setattr(self, f"conv_block{index}", ConvBlock(in_channels, out_channels))
            in_channels = out_channels
        self.fc1 = nn.Linear(EMBEDDING_DIM, EMBEDDING_DIM)
        self.fc_audioset = nn.Linear(EMBEDDING_DIM, CLASSES_NUM)
        self.reset_trainable()

    def reset_trainable(self) -> None:
        """The reference initialisation: Xavier-uniform weights, zero biases, identity batch norms."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def use_fft_stft(self) -> bool:
        """Compute the spectrogram with an FFT (O(n log n) instead of a 1024-tap convolution per bin) when the
        STFT kernels are the exact DFT, as in the published checkpoint; returns whether it does."""
        self.spectrogram_extractor.use_fft = self.spectrogram_extractor.stft.holds_the_dft()
        return self.spectrogram_extractor.use_fft

    def release_backbone(self) -> None:
        """Drop every layer after the log-mel front end (an int8 copy serves in their place)."""
        self.bn0 = nn.Identity()
        for index in range(1, len(CONV_CHANNELS) + 1):
            setattr(self, f"conv_block{index}", None)
        self.fc1 = self.fc_audioset = nn.Identity()

    def conv_blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{index}") for index in range(1, len(CONV_CHANNELS) + 1)]

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, 1, frames, mel_bins), in float32: power overflows float16."""
        return self.logmel_extractor(self.spectrogram_extractor(waveform))[:, None, :, :]

    def backbone(self, logmel: torch.Tensor) -> Cnn14Output:
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        blocks = self.conv_blocks()
        for index, block in enumerate(blocks):
            x = block(x, pool=index < len(blocks) - 1)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu_(self.fc1(x))
        return Cnn14Output(embedding=embedding, clipwise=torch.sigmoid(self.fc_audioset(embedding)))

    def forward(self, waveform: torch.Tensor) -> Cnn14Output:
        return self.backbone(self.logmel(waveform))
