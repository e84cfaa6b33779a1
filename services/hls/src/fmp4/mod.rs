//! CMAF fMP4 boxes (being written).
