//! Hash reputation (being written).
