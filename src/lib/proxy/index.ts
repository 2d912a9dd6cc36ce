export {type ProxyErrorCode, proxyError} from './errors.js'
export {type ListenOptions, ParentProxy, PROXIED_ROUTES, type ProxyOptions, type ProxyStats} from './proxy.js'
export {type ProxySettings, type RunningProxy, resolveProxySettings, runParentProxy, settingsFromArgv, startParentProxy, upstreamPath, waitForSignals} from './main.js'
export {type DevCertificate, selfSignedCertificate} from './tls.js'
