export * from './pn533-emulator.js';
export * from './fake-usb-device.js';
export * from './fake-usb-transport.js';
