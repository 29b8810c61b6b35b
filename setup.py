"""mfn_tf2: MobileFaceNet + ArcFace in TensorFlow 2, from face folders to Android-ready int8.

Install: ``pip install -e .`` (``pip install -e .[test]`` adds pytest).
"""
from setuptools import find_packages, setup

setup(
    name="mfn_tf2",
    version="0.1.0",
    description="Train, verify, quantize and export MobileFaceNet + ArcFace face embedders",
    packages=find_packages(include=["mfn_tf2", "mfn_tf2.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "tensorflow-model-optimization==0.8.1",
        "ai-edge-litert==2.3.0",
        "numpy==2.4.6",
        "opencv-python-headless==5.0.0.93",
        "pillow==13.0.0",
        "matplotlib==3.11.2",
        "tqdm==4.70.1",
        "tensorboard==2.21.0",
        # face detection (mfn_tf2.detection): MTCNN, MIT, its weights inside the wheel
        "mtcnn==1.0.0",
        "lz4==4.4.5",
        "joblib==1.6.0",
    ],
    extras_require={"test": ["pytest==9.2.0", "pytest-xdist==3.8.0"]},
)
