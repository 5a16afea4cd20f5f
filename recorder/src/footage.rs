//! Reading footage back out of the store, for the viewer-api and exports.
