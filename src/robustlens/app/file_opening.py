"""What the window opens from files, mixed into MainWindow: pictures (File → Open image…, a dropped
file), model checkpoints (File → Open model…, a dropped file; the architecture dialog when a file
lacks one), and dataset folders dropped on the window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from robustlens.engine.data import TORCHVISION_FILES, DatasetError, load_image_file
# IMAGE_SUFFIXES: what an image folder reads is what a dropped file opens as a picture
from robustlens.engine.data_folders import CIFAR10_BATCHES, CIFAR10_FOLDER, IMAGE_SUFFIXES, cifar10_folder
from robustlens.engine.jobs import Finished

from .context import Selection
from .image_dialog import OpenImageDialog

OWN_IMAGES = "Your own pictures, one subfolder per class: choose “Image folder…” in the Dataset list."


def missing_files_help(name: str, root: str | None) -> str | None:
    """What a window user puts where when the chosen folder lacks a dataset's files (None when the
    files are there and something else is wrong: the loader's own message says what)."""
    folder = Path(root).expanduser() if root else None
    if name == "cifar10":
        try:
            if folder is not None and cifar10_folder(folder):
                return None
        except DatasetError:
            pass  # no batches there: say what to put where
        batches = CIFAR10_BATCHES["train"]
        return (f"No CIFAR-10 batches in {folder or 'no folder'}. Unpack the “CIFAR-10 python version” "
                f"(cifar-10-python.tar.gz) so that a folder holds {CIFAR10_FOLDER}/ with {batches[0]} … "
                f"{batches[-1]}, {CIFAR10_BATCHES['test'][0]} and batches.meta, then press Folder… beside the "
                f"Dataset list and choose that folder (or {CIFAR10_FOLDER} itself). {OWN_IMAGES}")
    if name == "mnist":
        raw, files = TORCHVISION_FILES["mnist"]
        if folder is not None and all((folder / raw / f).is_file() for f in files):
            return None
        return (f"No MNIST files in {folder or 'no folder'}. Put the four unpacked MNIST files ({', '.join(files)}) "
                f"in a folder's {raw}/, then press Folder… beside the Dataset list and choose that folder. "
                f"{OWN_IMAGES}")
    return None


class FileOpening:
    """Mixed into MainWindow (which sets ``ctx``, ``engine``, ``banner``, ``gallery``, ``model_picker``)."""

    # ---------------------------------------------------------------- pictures

    def open_image(self, path: str, crop=None, invert: bool = False, label: int | None = None) -> None:
        """Load a PNG/JPEG (on the engine thread), converted to the dataset's size and channels:
        ``crop`` None (squashed whole) | "centre" | (left, top, right, bottom) pixels, ``invert``,
        ``label`` its true class (None: unknown)."""
        dataset = self.ctx.dataset
        shape = dataset.image_shape if dataset is not None else (1, 28, 28)
        path = str(path)
        if label is not None and not (self.ctx.classes and 0 <= int(label) < len(self.ctx.classes)):
            label = None

        def factory(cancel):
            yield Finished(load_image_file(path, shape, crop=crop, invert=invert))

        def on_event(event):
            if isinstance(event, Finished):
                image, note = event.result
                name = Path(path).name
                self.gallery.clear_selection()
                self._set_selection(Selection(image, label, None, name, note))
                self.banner.show_message("info", f"{name}: {note}")

        self.engine.submit("open-image", factory, on_event=on_event, label=f"opening {Path(path).name}")

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.ctx.last_folder("images"),
                                              "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff)")
        if path:
            self.ctx.remember_folder("images", str(Path(path).parent))
            self.ask_and_open_image(path)

    def ask_and_open_image(self, path: str) -> None:
        """Crop, invert and true class in a dialog, then open (an unreadable file opens directly, so
        the engine's error says what is wrong with it)."""
        dialog = OpenImageDialog(path, self.ctx.classes, self)
        if not dialog.readable:
            self.open_image(path)
            return
        if dialog.exec() == OpenImageDialog.DialogCode.Accepted:
            chosen = dialog.choices()
            self.open_image(path, crop=chosen.crop, invert=chosen.invert, label=chosen.label)

    # ---------------------------------------------------------------- dropped files

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()  # anything local: what it is, and what it is not, is said on drop

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            # the dialogs a drop may open run after the drop has ended, not inside the drag's handler
            QTimer.singleShot(0, lambda: self.open_dropped(paths))

    def open_dropped(self, paths: list[str]) -> None:
        """Open dropped files as File → Open … would: a checkpoint through the Open model loader (its
        dialog when the file lacks an architecture or σ), a picture through the Open image dialog (the
        first one: the window shows one image), a folder as a dataset (CIFAR-10's batches, else an
        image folder); anything else gets one line saying what can be dropped."""
        from .open_model_dialog import is_model_file, model_key_for_file

        image_opened, refused = False, []
        for path in paths:
            file = Path(path)
            if file.is_dir():
                self.open_dataset_folder(str(file))
            elif file.suffix.lower() in IMAGE_SUFFIXES:
                if image_opened:
                    refused.append(f"{file.name} (one image at a time)")
                    continue
                image_opened = True
                self.ctx.remember_folder("images", str(file.parent))
                self.ask_and_open_image(str(file))
            elif file.is_file() and is_model_file(str(file)):
                key = model_key_for_file(self, str(file))
                if key:
                    self.ctx.remember_folder("models", str(file.parent))
                    self.model_picker.add_file(key)
            else:
                refused.append(file.name)
        if refused:
            self.banner.show_message("error", f"Not opened: {', '.join(refused)}. Drop a picture "
                                     f"({', '.join(s[1:].upper() for s in IMAGE_SUFFIXES[:3])}, …), a model "
                                     "checkpoint (.pt, .pth, .pth.tar, .ckpt, TorchScript) or a dataset folder.")

    def open_dataset_folder(self, folder: str) -> None:
        """A folder as a dataset: CIFAR-10 when it holds the python batches, else an image folder."""
        try:
            cifar10_folder(folder)
            name = "cifar10"
        except DatasetError:
            name = "folder"
        self.load_dataset(name, "test", f"{name}:test", folder)

    # ---------------------------------------------------------------- models

    def open_model_dialog(self) -> None:
        from .open_model_dialog import ask_model_key  # asks the architecture a file lacks

        key = ask_model_key(self, self.ctx)
        if key:
            self.model_picker.add_file(key)

    def open_model(self, path: str) -> None:
        """Add a checkpoint file to the models; a bad file gives an error and is not added."""
        self.model_picker.add_file(str(Path(path).expanduser().resolve()))
