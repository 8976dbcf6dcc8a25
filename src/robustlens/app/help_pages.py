"""Help → Getting started (shown once, on the first run) and Help → About; Edit → Reset settings;
View → Messages. Mixed into MainWindow beside WindowMenus."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QVBoxLayout

import robustlens

from .controls import show_page

GETTING_STARTED_KEY = "help/getting_started_shown"

GETTING_STARTED = """
<h2>robustlens — three ways to use it</h2>
<p>Pick an image in the <b>gallery</b> (or File → Open image…, Ctrl+O). The <b>strip</b> above the
tabs shows it and what every loaded model predicts; each model keeps one colour in every panel.
Nothing long runs by itself: <b>F5</b> runs the tab you look at (Certify also runs on a click),
<b>Esc</b> stops it.</p>
<h3>1 · Attack a model — adversarial examples</h3>
<p><b>Attack</b> tab: PGD within an L∞ or L2 ball of radius ε on the selected image. Watch the loss
climb, see the perturbation δ in the strip, and the table of which other models the adversarial
image fools (transfer). <b>Geometry</b> slices the input space through the image and x<sub>adv</sub>.</p>
<h3>2 · Robust and non-robust features — Ilyas et al. 2019</h3>
<p><b>Features</b> tab: reconstruct an image from a robust and from a standard model's
representation (the two strip slots). <b>Experiments</b> builds the D<sub>R</sub>, D<sub>NR</sub>
and D<sub>rand</sub> datasets and reports how models trained on them generalise.</p>
<h3>3 · Certified robustness — Cohen et al. 2019</h3>
<p><b>Certify</b> tab: randomized smoothing. The noise histogram grows as samples come in; the
verdict gives the certified L2 radius R = σ·Φ<sup>−1</sup>(p<sub>A</sub>) (Theorem 1) or abstains.</p>
<h3>In a lecture</h3>
<p><b>F11</b> lecture mode: full screen, large fonts, the strip in one row, the gallery a filmstrip
(Ctrl+1). PgDown / PgUp step through the images (presenter remotes send these).
<b>F1</b> lists every shortcut; Edit → Reset settings brings every tab back to its defaults.</p>
"""

ABOUT = f"""
<h3>robustlens {robustlens.__version__}</h3>
<p>A desktop lens on adversarial examples: PGD attacks, the robust and non-robust features of
Ilyas et al. (2019, “Adversarial Examples Are Not Bugs, They Are Features”) and the certified
robustness of randomized smoothing (Cohen, Rosenfeld &amp; Kolter 2019).</p>
<p>Built-in data: the Fashion-MNIST test split; built-in models: a small zoo of standard,
adversarially trained and noise-trained networks. Every number on screen is computed by the
engine, live, on this machine's CPU or GPU.</p>
"""


class HelpPages:
    """Mixed into MainWindow: the Edit menu, View → Messages, Help → Getting started and About."""

    def _build_presenter_menus(self) -> None:
        bar = self.menuBar()
        menus = {a.text().replace("&", ""): a for a in bar.actions()}
        edit_menu = bar.addMenu("&Edit")
        if "View" in menus:  # File, Edit, View, …
            bar.insertMenu(menus["View"], edit_menu)
        self.reset_settings_action = self._action(
            "Reset settings", self.reset_all_settings, [],
            "Every tab's settings and the window's layout back to their defaults")
        edit_menu.addAction(self.reset_settings_action)
        self.messages_action = self._action("Messages…", lambda: self.banner.show_log(self), ["Ctrl+M"],
                                            "Every note and error shown so far")
        if "View" in menus:
            menus["View"].menu().addSeparator()
            menus["View"].menu().addAction(self.messages_action)
        help_menu = menus["Help"].menu() if "Help" in menus else bar.addMenu("&Help")
        self.getting_started_action = QAction("Getting started", self)
        self.getting_started_action.triggered.connect(self.show_getting_started)
        self.about_action = QAction("About robustlens", self)
        self.about_action.triggered.connect(self.show_about)
        first = help_menu.actions()[0] if help_menu.actions() else None
        help_menu.insertAction(first, self.getting_started_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def reset_all_settings(self) -> None:
        """Edit → Reset settings: every tab's declared settings to their defaults, and the window's
        own (gallery and strip shown, no class filter, the default splits)."""
        for panel in self.panels.values():
            if hasattr(panel, "reset_settings"):
                panel.reset_settings()
        self.gallery.set_class_filter(None)
        self.show_gallery(True)
        self.show_strip(True)
        self.centre_split.setSizes([380, 480])
        self.banner.show_message("info", "Settings reset to their defaults (every tab and the window).")

    def maybe_show_getting_started(self) -> None:
        """The first run (nothing remembered says it was shown) opens Getting started, once."""
        if not self.settings.value(GETTING_STARTED_KEY, False, type=bool):
            self.settings.setValue(GETTING_STARTED_KEY, True)
            self.show_getting_started()

    def show_getting_started(self) -> QDialog:
        text = QLabel(GETTING_STARTED)
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        dialog = show_page(self, "Getting started", text)
        dialog.setMinimumWidth(640)
        dialog.show()
        self.getting_started_dialog = dialog
        return dialog

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "About robustlens", ABOUT, QMessageBox.StandardButton.Close, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setModal(False)
        box.show()
