"""The learned cost model: features from the graph and datasheet, the fitted roofline prior, trees,
memory of measured kernels, adaptation and the universal model. Never imports a device.
"""
