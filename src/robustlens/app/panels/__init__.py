"""The tabs of the main window, in order. A panel joins the window with one line here:

    ("Title", "robustlens.app.panels.MODULE:ClassName"),

The class is a QWidget whose constructor takes the AppContext: ``ClassName(ctx)`` (see
app/README.md, "The panel contract"). Panels are imported when the window opens; one that fails to
import or construct becomes a tab showing the error, and the rest of the window works on.
"""

PANELS: list[tuple[str, str]] = [
    ("Certify", "robustlens.app.panels.certify:CertifyPanel"),
    ("Attack", "robustlens.app.panels.attack:AttackPanel"),
    ("Features", "robustlens.app.panels.features:FeaturesPanel"),
    ("Geometry", "robustlens.app.panels.geometry:GeometryPanel"),
    ("Experiments", "robustlens.app.panels.experiments:ExperimentsPanel"),
    ("Predictions", "robustlens.app.panels.predictions:PredictionsPanel"),
]
