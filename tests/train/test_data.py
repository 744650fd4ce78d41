"""Data folders: clear refusals of unusable folders, corrupt images skipped (counted) or refused."""
import pytest

from zoo.train import CorruptImageError, DataError, make_config
from zoo.train.data import build_datasets, load_digits_samples

from train_helpers import make_image_folder


def folder_cfg(root, **kw):
    return make_config(dict(dataset='folder', data_dir=str(root), **kw))


def test_digits_split_is_stratified_and_reproducible():
    a = load_digits_samples(0.2, 0)
    b = load_digits_samples(0.2, 0)
    assert len(a[0]) + len(a[2]) == 1797 and len(a[2]) == 360
    assert a[3] == b[3] and sorted(set(a[3])) == list(range(10))


def test_image_folder_lists_samples(tmp_path):
    data = build_datasets(folder_cfg(make_image_folder(tmp_path)))
    assert data.classes == ['a', 'b'] and len(data.train) == 6 and len(data.val) == 6
    img, label = data.train[0]
    assert img.size == (12, 12) and label == 0


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        build_datasets(folder_cfg(tmp_path / 'nope'))
    (tmp_path / 'empty' / 'train').mkdir(parents=True)
    with pytest.raises(DataError, match='is empty'):
        build_datasets(folder_cfg(tmp_path / 'empty'))


def test_class_folder_without_images(tmp_path):
    root = make_image_folder(tmp_path)
    (root / 'train' / 'c').mkdir()
    (root / 'train' / 'c' / 'notes.txt').write_text('x')
    with pytest.raises(DataError, match=r'train/c holds no images'):
        build_datasets(folder_cfg(root))


def test_val_classes_must_match(tmp_path):
    root = make_image_folder(tmp_path)
    (root / 'val' / 'b').rename(root / 'val' / 'z')
    with pytest.raises(DataError, match='differ'):
        build_datasets(folder_cfg(root))


def test_corrupt_image_skipped_with_count_or_refused(tmp_path):
    root = make_image_folder(tmp_path)
    (root / 'train' / 'a' / '1.png').write_bytes(b'not a png')
    data = build_datasets(folder_cfg(root))
    with pytest.warns(UserWarning, match='skipping corrupt image'):
        samples = [data.train[i] for i in range(len(data.train))]
    assert len(samples) == 6 and data.train.corrupt_count == 1
    strict = build_datasets(folder_cfg(root, on_corrupt='error'))
    with pytest.raises(CorruptImageError, match='1.png'):
        [strict.train[i] for i in range(len(strict.train))]
