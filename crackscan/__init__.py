"""The shared core under both halves of the product: nothing here imports `training` or
`pipeline`.

Listing sources and reading archives (`sources`), decoding images (`decode`), the tiling rule
(`tiles`), the photo verdict rule (`verdict`), the class names (`labels`) and the model card
(`model_card`) are one implementation each, so the images a model is trained on and the
images it scores are read, cut and judged the same way. `cli` holds what every command's
command line shares, `synthetic` the generated stand-in data, `tflite_model` the LiteRT
runner used by export checks, scoring and benchmarks.
"""
