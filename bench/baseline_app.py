"""The seed-style baseline: Flask, a torch model loaded at start-up, default threads, no batching.

Run as the classroom did: `gunicorn -w 2 -b 127.0.0.1:PORT bench.baseline_app:app` with
FMNIST_BASELINE_MODEL pointing at an artifact directory. Used only by bench/serve_bench.py.
"""

import io
import os

import numpy as np
import torch
from flask import Flask, jsonify, request
from PIL import Image

from fmnist.artifact import load_model, read_artifact

art = read_artifact(os.environ["FMNIST_BASELINE_MODEL"])
model = load_model(art)
model.eval()
mean, std = art.preprocessing.mean, art.preprocessing.std
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    file = request.files["image"]
    img = Image.open(io.BytesIO(file.read())).convert("L").resize((28, 28))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - mean) / std
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)[None, None]), dim=1)[0]
    conf, idx = probs.max(0)
    return jsonify({"label": art.classes[int(idx)], "confidence": float(conf)})
