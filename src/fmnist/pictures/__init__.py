"""Pictures made for training and for the benchmarks, never served: `styles` (dataset images rendered as the
pictures people send), `garments` (garments and other objects drawn from parameters), `outliers` (pictures that
are not garments), `backgrounds` (real photographs to lay garments on: train / held out)."""
