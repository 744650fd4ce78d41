"""Building blocks shared by several zoo families, one concept per file."""
from .input_checks import check_image_input, check_video_input, square_size

__all__ = ['check_image_input', 'check_video_input', 'square_size']
