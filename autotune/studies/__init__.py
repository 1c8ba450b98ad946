"""Studies of a part: the DLFusion synthetic-layer study and the device-effects study."""
