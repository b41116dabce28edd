//! The review list, query batch, disagreement histogram and network confusion (being written).
