"""media layer: reading and writing video files, below every model. Nothing here knows about encoders."""
from media.clips import load_segment, load_segments, load_video, read_frames_at, stream_segments
from media.readers import READERS, OpenedVideo, VideoMetadata, probe, video_duration, video_metadata
from media.sampling import get_frame_indices, segment_windows, trimmed_length
from media.source import IMAGE_EXTENSIONS, VideoDecodeError, VideoSource
from media.thumbnails import thumbnail_taps, write_thumbnails
from media.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, test_transform, train_transform
from media.writers import write_image, write_video

__all__ = ["load_segment", "load_segments", "load_video", "read_frames_at", "stream_segments", "READERS", "OpenedVideo",
           "VideoMetadata", "probe", "video_duration", "video_metadata", "get_frame_indices", "segment_windows",
           "trimmed_length", "IMAGE_EXTENSIONS", "VideoDecodeError", "VideoSource", "IMAGENET_MEAN", "IMAGENET_STD",
           "normalize", "test_transform", "train_transform", "write_image", "thumbnail_taps", "write_thumbnails",
           "write_video"]
