// SLMStoreKit is the library a program links: it re-exports the layer targets, so one import
// gives the whole public API while each layer can only see the layers below it.

@_exported import SLMFormats
@_exported import SLMLocalStore
@_exported import SLMRemote
@_exported import SLMDevice
@_exported import SLMPages
