/**
 * `@tapline/core`: the contracts every Tapline driver and frontend shares (reader model, capabilities, driver
 * plugins, transports, errors), the RxJS pipelines, and the composition root.
 *
 * @packageDocumentation
 */
import 'reflect-metadata';
export * from './model/errors.js';
export * from './model/capabilities.js';
export * from './model/tag.js';
export * from './model/reader.js';
export * from './model/driver.js';
export * from './model/device-source.js';
export * from './model/platform.js';
export * from './platform/index.js';
export * from './model/atr.js';
export * from './transport/pcsc.js';
export * from './transport/usb.js';
export * from './transport/device-sources.js';
export * from './transport/pcsc-native.js';
export * from './transport/usb-native.js';
export * from './drivers/registry.js';
export * from './drivers/discovery.js';
export * from './drivers/pcsc-reader.js';
export * from './drivers/pcsc-generic.js';
export * from './controllers/pn53x/index.js';
export * from './controllers/pcsc-part3/index.js';
export * from './pipeline/reader-manager.js';
export * from './pipeline/wait-for-tag.js';
export * from './pipeline/scan-requests.js';
export * from './runtime/logger.js';
export * from './runtime/clock.js';
export * from './runtime/config.js';
export * from './runtime/tokens.js';
export * from './runtime/container.js';
export * from './runtime/file-lock.js';
export * from './runtime/once-store.js';
export * from './crypto/aes.js';
export * from './crypto/ecdsa.js';
export * from './tags/channel.js';
export * from './tags/apex.js';
export * from './tags/identify.js';
export * from './tags/iso7816/index.js';
export * from './tags/ntag4xx/index.js';
export * from './tags/iso15693/index.js';
export * from './tags/sdm/index.js';
export * from './tags/originality.js';
export * from './util/bytes.js';
export * from './util/deadline.js';
