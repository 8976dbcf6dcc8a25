"""The window's menus and keyboard shortcuts, and what the File and View menus do without an engine
job: export, lecture mode, showing and hiding the gallery column and the image strip."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont, QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from . import style
from .export import ask_and_export, ask_file_and_export

FILMSTRIP_THUMBNAIL = 56   # lecture mode's one-row gallery under the tabs
THUMBNAIL = 56
FILMSTRIP_OPEN_FROM = 900  # screen lines from which lecture mode opens with the filmstrip shown


class WindowMenus:
    """Mixed into MainWindow: builds the menu bar and window-wide shortcuts (``*_action``)."""

    def _action(self, text, slot, shortcuts=(), tip="", checkable=False) -> QAction:
        act = QAction(text, self)
        if shortcuts:
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_menus(self) -> None:
        action = self._action
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_image_action = action("Open image…", self.open_image_dialog, ["Ctrl+O"],
                                        "Open a PNG/JPEG; it is converted to the dataset's size and channels")
        self.open_model_action = action("Open model…", self.open_model_dialog, ["Ctrl+Shift+O"],
                                        "Load a model checkpoint file")
        self.export_action = action("Export panel…", self.export_panel, ["Ctrl+E"],
                                    "Save a plot or image panel as PNG or SVG")
        quit_action = action("Quit", self.close, ["Ctrl+Q"])
        for act in (self.open_image_action, self.open_model_action, None, self.export_action, None, quit_action):
            file_menu.addSeparator() if act is None else file_menu.addAction(act)
        view_menu = menu.addMenu("&View")
        self.lecture_action = action("Lecture mode", self.set_lecture_mode, ["F11"],
                                     "Full screen, larger fonts and images", checkable=True)
        self.next_action = action("Next image", lambda: self.gallery.step(1), ["PgDown", "Alt+Right"])
        self.previous_action = action("Previous image", lambda: self.gallery.step(-1), ["PgUp", "Alt+Left"])
        self.gallery_action = action("Gallery and pickers", self.show_gallery, ["Ctrl+1"],
                                     "Show the left column (hide it to give the tabs the width)", checkable=True)
        self.strip_action = action("Image strip", self.show_strip, ["Ctrl+2"],
                                   "Show the image strip (hide it to give the tabs the height)", checkable=True)
        self.gallery_action.setChecked(True)
        self.strip_action.setChecked(True)
        for act in (self.lecture_action, self.gallery_action, self.strip_action, None, self.next_action,
                    self.previous_action):
            view_menu.addSeparator() if act is None else view_menu.addAction(act)
        run_menu = menu.addMenu("&Run")
        self.run_action = action("Run the current tab", self.request_run, ["F5", "Ctrl+Return"],
                                 "Start the current tab's job for the selected image")
        self.cancel_action = action("Cancel", self.cancel_jobs, ["Esc"], "Stop the running jobs")
        self.cluster_action = action("Cluster…", self.configure_cluster,
                                     tip="Run certified accuracy, robustness curves and the Ilyas pipeline on Ray")
        run_menu.addAction(self.run_action)
        run_menu.addAction(self.cancel_action)
        run_menu.addSeparator()
        run_menu.addAction(self.cluster_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(action("Keyboard shortcuts", self.show_shortcuts, ["F1"]))
        self.deck_action = action("Guided lecture", self.start_deck,
                                  tip="Walk both papers step by step (PgDown / PgUp); robustlens --deck FILE for your own")
        help_menu.addAction(self.deck_action)

    def configure_cluster(self) -> None:
        """Run → Cluster…: where the long experiments run from now on (remembered with the window)."""
        from .cluster_dialog import ClusterDialog

        dialog = ClusterDialog(self.ctx.cluster_address, self.ctx.cluster_workers, self)
        if dialog.exec() != ClusterDialog.DialogCode.Accepted:
            return
        self.ctx.cluster_address, self.ctx.cluster_workers = dialog.values()
        where = {"": "here", "local": "on a local Ray"}.get(self.ctx.cluster_address,
                                                           f"on the Ray cluster at {self.ctx.cluster_address}")
        self.ctx.info(f"Certified accuracy, robustness curves and the Ilyas pipeline now run {where}.")

    def show_shortcuts(self) -> None:
        rows = [(self.next_action, "next image"), (self.previous_action, "previous image"),
                (self.run_action, "run the current tab's job"), (self.cancel_action, "cancel running jobs"),
                (self.lecture_action, "lecture mode (full screen, large fonts)"),
                (self.gallery_action, "show / hide the gallery (the filmstrip in lecture mode)"),
                (self.strip_action, "show / hide the image strip"),
                (self.export_action, "export a panel as PNG/SVG"), (self.open_image_action, "open an image"),
                (self.open_model_action, "open a model file")]
        if getattr(self, "messages_action", None) is not None:
            rows.append((self.messages_action, "the messages shown so far"))
        # a table: a long description wraps in its own column, never into the keys'
        body = "".join(f"<tr><td style='padding-right:18px; white-space:nowrap'><b>"
                       f"{' / '.join(s.toString() for s in a.shortcuts())}</b></td><td>{what}</td></tr>"
                       for a, what in rows)
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", f"<table>{body}</table>",
                          QMessageBox.StandardButton.Close, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setModal(False)
        box.show()

    def start_deck(self, path=None, step: int = 1):
        """Help → Guided lecture: the built-in deck (app/deck.py), or the deck file ``path``."""
        from .deck import start_deck

        return start_deck(self, path or None, step)

    # ---------------------------------------------------------------- view

    def set_lecture_mode(self, on: bool, full_screen: bool = True) -> None:
        """Lecture mode: large fonts; the active tab owns the screen: the pickers fold away, the
        gallery becomes a one-row filmstrip under the tabs (Ctrl+1 folds it), the strip one compact
        row."""
        on = bool(on)
        was = bool(self.ctx.lecture_mode)
        self.lecture_action.setChecked(on)
        self.ctx.lecture_mode = on
        app = QApplication.instance()
        font = QFont(app.font())
        font.setPointSizeF(style.base_point_size() * (style.LECTURE_FONT_SCALE if on else 1.0))
        app.setFont(font)
        # a style sheet stops the application font from reaching the widgets: setting it again
        # re-polishes every widget of the window (panels included) with the new font
        sheet = self.styleSheet()
        self.setStyleSheet("")
        self.setStyleSheet(sheet)
        for bar in (self.menuBar(), self.statusBar()):  # outside the central widget's propagation
            bar.setFont(font)
            for child in bar.findChildren(QWidget):
                child.setFont(font)
        if on != was:
            # the filmstrip starts folded on a projector-sized screen (720 lines): the tab needs them
            screen = self.screen().size().height() if full_screen and self.screen() is not None else self.height()
            self._move_gallery(on, filmstrip_open=screen >= FILMSTRIP_OPEN_FROM)
        self.strip.set_lecture_mode(on)
        self.gallery.set_thumbnail_size(FILMSTRIP_THUMBNAIL if on else THUMBNAIL)
        if on and full_screen:
            self.showFullScreen()
        elif not on and self.isFullScreen():
            self.showNormal()
        self.ctx.lectureModeChanged.emit(on)

    def _move_gallery(self, lecture: bool, filmstrip_open: bool = True) -> None:
        """The gallery between the left column (its group box) and the filmstrip under the tabs."""
        if lecture:
            self._left_shown_before = self.gallery_action.isChecked()
            self.left_column.setVisible(False)
            self.filmstrip_layout.addWidget(self.gallery)
            self.gallery.set_filmstrip(True)
            self.filmstrip.setVisible(filmstrip_open)
            self.gallery_action.setChecked(filmstrip_open)
        else:
            self.gallery.set_filmstrip(False)
            self.gallery_box.layout().addWidget(self.gallery)
            self.filmstrip.setVisible(False)
            shown = getattr(self, "_left_shown_before", True)
            self.gallery_action.setChecked(shown)
            self.left_column.setVisible(shown)

    def show_gallery(self, on: bool) -> None:
        self.gallery_action.setChecked(bool(on))
        if self.ctx.lecture_mode:
            self.filmstrip.setVisible(bool(on))
        else:
            self.left_column.setVisible(bool(on))

    def show_strip(self, on: bool) -> None:
        self.strip_action.setChecked(bool(on))
        self.strip.setVisible(bool(on))

    # ---------------------------------------------------------------- export

    def _add_export_menu(self, name: str, widget: QWidget) -> None:
        """Right-click → Export… on a panel (its own menu, if it has one, is replaced)."""
        act = QAction(f"Export {name}…", widget)
        act.triggered.connect(lambda: self._export(lambda folder: ask_file_and_export(name, widget, self, folder)))
        widget.addAction(act)
        widget.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    def export_panel(self) -> None:
        choices = [(name, w) for name, w in self.ctx.exportables() if w.isVisible()]
        choices.append(("Whole window", self))
        self._export(lambda folder: ask_and_export(choices, self, folder))

    def _export(self, ask) -> None:
        """Run an export dialog (``ask(folder)`` returns the file written, or None) and say what it did."""
        try:
            written = ask(self.ctx.last_folder("export"))
        except (OSError, ValueError) as error:
            self.banner.show_message("error", f"Export failed: {error}")
            return
        if written is not None:
            self.ctx.remember_folder("export", str(written.parent))
            self.banner.show_message("info", f"Saved {written}")
