import os
import sys

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from msm_plugin.metrics import io as video_io
from msm_plugin.metrics.io import load_videos, read_frame_folder, read_tensor_file, read_video


@pytest.fixture
def clip(drifting_blobs):
    """One smooth 8-frame 32x32 RGB clip as uint8 ``[F, H, W, 3]`` and as float ``[F, 3, H, W]``.

    32 px: decord 0.6 fails on some small widths (16, 24, 48 px) that imageio reads.
    """
    video = drifting_blobs(1, seed=3, size=32)[0]
    frames = np.rint(video.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return frames, frames.transpose(0, 3, 1, 2).astype(np.float32) / 255


def write_mp4(path, frames):
    imageio_v2.mimwrite(path, list(frames), fps=8, quality=9, macro_block_size=1)
    return path


def write_png_folder(folder, frames):
    folder.mkdir()
    for f, frame in enumerate(frames):
        iio.imwrite(folder / f"frame{f + 1}.png", frame)
    return folder


class TestReadVideo:
    def test_mp4_with_decord_and_imageio(self, tmp_path, clip):
        frames, expected = clip
        path = write_mp4(tmp_path / "clip.mp4", frames)
        by_decord = read_video(path, backend="decord")
        by_imageio = read_video(path, backend="imageio")
        assert by_decord.shape == by_imageio.shape == (8, 3, 32, 32)
        assert by_decord.dtype == np.float32 and 0 <= by_decord.min() and by_decord.max() <= 1
        # Lossy H.264 (yuv420p): close to the source, and both decoders agree.
        assert np.abs(by_imageio - expected).mean() < 0.03
        np.testing.assert_allclose(by_decord, by_imageio, atol=2 / 255)

    def test_auto_without_decord_reads_with_imageio(self, tmp_path, clip, monkeypatch):
        path = write_mp4(tmp_path / "clip.mp4", clip[0])
        monkeypatch.setitem(sys.modules, "decord", None)  # import decord now raises ImportError

        def no_decord(path):
            raise AssertionError("decord must not be used when it cannot be imported")

        monkeypatch.setattr(video_io, "_read_decord", no_decord)
        np.testing.assert_array_equal(read_video(path), read_video(path, backend="imageio"))

    def test_auto_falls_back_when_decord_fails(self, tmp_path, clip, monkeypatch):
        path = write_mp4(tmp_path / "clip.mp4", clip[0])

        def broken(path):
            raise RuntimeError("boom")

        monkeypatch.setattr(video_io, "_read_decord", broken)
        np.testing.assert_array_equal(read_video(path), read_video(path, backend="imageio"))
        with pytest.raises(ValueError, match=r"cannot decode .*clip.mp4 with decord \(RuntimeError: boom\)"):
            read_video(path, backend="decord")

    def test_gif_grey_frames_become_rgb(self, tmp_path):
        grey = (np.arange(4)[:, None, None] * 60 + np.zeros((4, 16, 16))).astype(np.uint8)
        iio.imwrite(tmp_path / "grey.gif", grey, duration=100, loop=0)
        video = read_video(tmp_path / "grey.gif")
        assert video.shape == (4, 3, 16, 16)
        np.testing.assert_allclose(video[:, 1, 5, 5], np.arange(4) * 60 / 255, atol=1 / 255)

    def test_undecodable_file(self, tmp_path):
        (tmp_path / "bad.mp4").write_bytes(b"not a video")
        with pytest.raises(ValueError, match=r"cannot decode .*bad.mp4 \(.*imageio: "):
            read_video(tmp_path / "bad.mp4")

    def test_decoded_frames_of_an_unknown_layout(self, tmp_path, monkeypatch):
        path = tmp_path / "clip.mp4"
        path.write_bytes(b"decoded by the patched reader")
        monkeypatch.setattr(video_io, "_read_imageio", lambda p: np.zeros((2, 4, 4, 5), np.uint8))
        with pytest.raises(ValueError, match=r"imageio: ValueError: expected frames \[F, H, W\] or \[F, H, W, C\] from .*clip.mp4, got shape \(2, 4, 4, 5\)"):
            read_video(path, backend="imageio")

    def test_missing_file(self, tmp_path):
        with pytest.raises(ValueError, match="cannot read .*gone.mp4: no such file"):
            read_video(tmp_path / "gone.mp4")

    def test_unknown_suffix(self, tmp_path):
        with pytest.raises(ValueError, match=r"expected a video file \(.*\), got .*notes.txt"):
            read_video(tmp_path / "notes.txt")

    def test_unknown_backend(self, tmp_path):
        with pytest.raises(ValueError, match=r"`backend` should be one of \('auto', 'decord', 'imageio'\), got 'av'"):
            read_video(tmp_path / "clip.mp4", backend="av")


class TestReadFrameFolder:
    def test_png_frames_in_natural_order(self, tmp_path):
        folder = tmp_path / "frames"
        folder.mkdir()
        for k in range(1, 12):  # frame10 and frame11 must come after frame9
            iio.imwrite(folder / f"frame{k}.png", np.full((8, 8, 3), 20 * k, np.uint8))
        video = read_frame_folder(folder)
        assert video.shape == (11, 3, 8, 8)
        np.testing.assert_allclose(video[:, 0, 0, 0], 20 * np.arange(1, 12) / 255, rtol=1e-6)

    def test_alpha_dropped_and_grey_repeated(self, tmp_path):
        folder = tmp_path / "frames"
        folder.mkdir()
        rgba = np.zeros((4, 4, 4), np.uint8)
        rgba[..., 0], rgba[..., 3] = 255, 10
        iio.imwrite(folder / "a.png", rgba)
        iio.imwrite(folder / "b.png", np.full((4, 4), 51, np.uint8))
        video = read_frame_folder(folder)
        np.testing.assert_allclose(video[0, :, 0, 0], [1.0, 0.0, 0.0])
        np.testing.assert_allclose(video[1, :, 0, 0], [0.2, 0.2, 0.2])

    def test_no_images(self, tmp_path):
        with pytest.raises(ValueError, match=r"no image frames \(.*\) in folder"):
            read_frame_folder(tmp_path)

    def test_mixed_frame_sizes(self, tmp_path):
        iio.imwrite(tmp_path / "1.png", np.zeros((8, 8, 3), np.uint8))
        iio.imwrite(tmp_path / "2.png", np.zeros((8, 6, 3), np.uint8))
        with pytest.raises(ValueError, match=r"frames of one video must share a size: 2.png is 8x6, 1.png is 8x8"):
            read_frame_folder(tmp_path)

    # imageio tries every plugin on a junk file; two of them warn about their own deprecation.
    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_unreadable_frame(self, tmp_path):
        (tmp_path / "1.png").write_bytes(b"junk")
        with pytest.raises(ValueError, match=r"cannot read frame .*1.png \("):
            read_frame_folder(tmp_path)


class TestReadTensorFile:
    def test_pt_and_npy_batches(self, tmp_path, rng):
        data = rng.random((2, 3, 1, 4, 4)).astype(np.float32)
        torch.save(torch.from_numpy(data), tmp_path / "v.pt")
        np.save(tmp_path / "v.npy", data)
        np.testing.assert_array_equal(read_tensor_file(tmp_path / "v.pt"), data)
        np.testing.assert_array_equal(read_tensor_file(tmp_path / "v.npy"), data)

    def test_single_video_and_uint8(self, tmp_path):
        np.save(tmp_path / "v.npy", np.full((2, 3, 4, 4), 255, np.uint8))
        video = read_tensor_file(tmp_path / "v.npy")
        assert video.shape == (1, 2, 3, 4, 4) and video.dtype == np.float32 and video.max() == 1.0

    def test_half_precision_pt(self, tmp_path):
        torch.save(torch.full((1, 2, 3, 4, 4), 0.5, dtype=torch.bfloat16), tmp_path / "v.pt")
        assert read_tensor_file(tmp_path / "v.pt").dtype == np.float32

    def test_unreadable(self, tmp_path):
        (tmp_path / "v.pt").write_bytes(b"junk")
        with pytest.raises(ValueError, match=r"cannot read tensor file .*v.pt \("):
            read_tensor_file(tmp_path / "v.pt")

    def test_not_a_tensor(self, tmp_path):
        torch.save({"videos": torch.zeros(1)}, tmp_path / "v.pt")
        with pytest.raises(ValueError, match=r"expected a single tensor \[N, F, C, H, W\] in .*v.pt, got dict"):
            read_tensor_file(tmp_path / "v.pt")

    def test_wrong_rank(self, tmp_path):
        np.save(tmp_path / "v.npy", np.zeros((3, 4, 4), np.float32))
        with pytest.raises(ValueError, match=r"\[N, F, C, H, W\] or \[F, C, H, W\] in .*v.npy, got shape \(3, 4, 4\)"):
            read_tensor_file(tmp_path / "v.npy")

    def test_latent_channels(self, tmp_path):
        np.save(tmp_path / "v.npy", np.zeros((1, 2, 16, 4, 4), np.float32))
        with pytest.raises(ValueError, match=r"C = 1 or 3 and no empty axis in .*got shape \(1, 2, 16, 4, 4\) \(latents must"):
            read_tensor_file(tmp_path / "v.npy")

    def test_integer_other_than_uint8(self, tmp_path):
        np.save(tmp_path / "v.npy", np.zeros((1, 2, 3, 4, 4), np.int64))
        with pytest.raises(ValueError, match="expected float values in \\[0, 1\\] or uint8 in .*got dtype int64"):
            read_tensor_file(tmp_path / "v.npy")

    def test_non_finite(self, tmp_path):
        np.save(tmp_path / "v.npy", np.full((1, 2, 3, 4, 4), np.nan, np.float32))
        with pytest.raises(ValueError, match="expected finite values in .*v.npy"):
            read_tensor_file(tmp_path / "v.npy")

    def test_minus_one_to_one_range(self, tmp_path):
        np.save(tmp_path / "v.npy", np.linspace(-1, 1, 96, dtype=np.float32).reshape(1, 2, 3, 4, 4))
        with pytest.raises(ValueError, match=r"values in \[0, 1\] in .*got min -1 and max 1 \(map \[-1, 1\] with"):
            read_tensor_file(tmp_path / "v.npy")


class TestLoadVideos:
    def test_bad_items_are_reported_and_the_rest_is_read(self, tmp_path, clip):
        frames, _ = clip
        root = tmp_path / "generated"
        root.mkdir()
        write_mp4(root / "a.mp4", frames)
        iio.imwrite(root / "b.gif", frames, duration=100, loop=0)
        write_png_folder(root / "c_frames", frames)
        (root / "d_bad.mp4").write_bytes(b"junk")
        write_mp4(root / "e_small.mp4", frames[:, :16, :16])
        np.save(root / "f_one_frame.npy", np.zeros((1, 1, 3, 32, 32), np.float32))
        (root / "g_empty").mkdir()
        (root / "h_notes.txt").write_text("hi")
        loaded = load_videos(root)
        assert loaded.names == ["a.mp4", "b.gif", "c_frames"]
        assert loaded.videos.shape == (3, 8, 3, 32, 32)
        assert set(loaded.errors) == {"d_bad.mp4", "e_small.mp4", "f_one_frame.npy[0]", "g_empty", "h_notes.txt"}
        assert "cannot decode" in loaded.errors["d_bad.mp4"]
        assert "[8, 3, 16, 16] differs from the set's most common [8, 3, 32, 32]" in loaded.errors["e_small.mp4"]
        assert "expected at least 2 frames to measure motion, got 1" == loaded.errors["f_one_frame.npy[0]"]
        assert "no image frames" in loaded.errors["g_empty"]
        assert "unsupported file h_notes.txt" in loaded.errors["h_notes.txt"]

    def test_frame_folder_is_one_video(self, tmp_path, clip):
        folder = write_png_folder(tmp_path / "frames", clip[0])
        loaded = load_videos(folder)
        assert loaded.names == ["frames"] and loaded.videos.shape == (1, 8, 3, 32, 32) and loaded.errors == {}
        np.testing.assert_allclose(loaded.videos[0], clip[1], atol=1e-6)

    def test_tensor_file_gives_many_videos(self, tmp_path, rng):
        np.save(tmp_path / "set.npy", rng.random((3, 2, 1, 4, 4)).astype(np.float32))
        loaded = load_videos(tmp_path / "set.npy")
        assert loaded.names == ["set.npy[0]", "set.npy[1]", "set.npy[2]"]

    def test_tie_keeps_the_shape_read_first(self, tmp_path):
        np.save(tmp_path / "1.npy", np.zeros((1, 2, 1, 4, 4), np.float32))
        np.save(tmp_path / "2.npy", np.zeros((1, 2, 1, 8, 8), np.float32))
        loaded = load_videos(tmp_path)
        assert loaded.names == ["1.npy[0]"] and list(loaded.errors) == ["2.npy[0]"]

    def test_empty_folder(self, tmp_path):
        loaded = load_videos(tmp_path)
        assert loaded.videos is None
        assert list(loaded.errors.values()) == [
            f"folder {tmp_path} is empty: expected videos, tensor files or image frames"
        ]

    def test_missing_path(self, tmp_path):
        loaded = load_videos(tmp_path / "nowhere")
        assert loaded.videos is None and "no such file or folder" in loaded.errors[str(tmp_path / "nowhere")]

    def test_nothing_readable(self, tmp_path):
        (tmp_path / "bad.mp4").write_bytes(b"junk")
        loaded = load_videos(tmp_path)
        assert loaded.videos is None and list(loaded.errors) == ["bad.mp4"]

    def test_unknown_backend(self, tmp_path):
        with pytest.raises(ValueError, match="`backend` should be one of"):
            load_videos(tmp_path, backend="ffmpeg")


class TestDecoderMessages:
    def test_descriptor_2_is_restored_after_a_failed_decode(self, tmp_path, capfd):
        """The decoders' own messages are dropped, and what is written after the decode arrives."""
        (tmp_path / "bad.mp4").write_bytes(b"junk")
        with pytest.raises(ValueError, match="cannot decode"):
            read_video(tmp_path / "bad.mp4")
        os.write(2, b"still here\n")
        assert capfd.readouterr().err == "still here\n"

    def test_without_descriptor_2_files_still_decode(self, tmp_path, clip, monkeypatch):
        frames, expected = clip
        iio.imwrite(tmp_path / "c.gif", frames, duration=100)

        def no_descriptor(fd):
            raise OSError(9, "Bad file descriptor")

        monkeypatch.setattr(video_io.os, "dup", no_descriptor)
        assert read_video(tmp_path / "c.gif").shape == expected.shape
