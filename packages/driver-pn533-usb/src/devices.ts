/** One USB device this driver claims, and what is known about it. */
export interface Pn533UsbDevice {
  readonly vendorId: number;
  readonly productId: number;
  /** The name used when the device has no USB strings. */
  readonly name: string;
  /** What sets it apart (sources: readers.md §5.1). */
  readonly notes?: string;
}

/** The PN533 devices this driver claims (readers.md §5.1). */
export const PN533_USB_DEVICES: readonly Pn533UsbDevice[] = Object.freeze([
  { vendorId: 0x04cc, productId: 0x2533, name: 'NXP PN533', notes: 'NXP demo boards and SensorID StickID.' },
  { vendorId: 0x04e6, productId: 0x5591, name: 'SCM SCL3711', notes: 'Vendor class 0xFF, not CCID.' },
  // SCL3712: nfcpy says 5593, libnfc 5594 ("to check on real device"); both are claimed until a device settles it.
  { vendorId: 0x04e6, productId: 0x5593, name: 'SCM SCL3712', notes: 'Product id as nfcpy lists it.' },
  { vendorId: 0x04e6, productId: 0x5594, name: 'SCM SCL3712', notes: 'Product id as libnfc lists it.' },
  {
    vendorId: 0x1fd3,
    productId: 0x0608,
    name: 'ASK LoGO',
    notes: 'LEDs on P3x and a progressive field on P34 (not driven by Tapline); no target mode.',
  },
]);

/** The PN533 devices this driver claims, as [vendor id, product id]. */
export const PN533_USB_IDS: readonly (readonly [vendorId: number, productId: number])[] = Object.freeze(
  PN533_USB_DEVICES.map((d) => [d.vendorId, d.productId] as const),
);

/** The entry for a USB id, if this driver claims it. */
export function pn533UsbDevice(vendorId: number, productId: number): Pn533UsbDevice | undefined {
  return PN533_USB_DEVICES.find((d) => d.vendorId === vendorId && d.productId === productId);
}
