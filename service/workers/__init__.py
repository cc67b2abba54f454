"""Background work: polling payment sources and watching consents."""
