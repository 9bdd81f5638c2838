import { ErrorCode, TaplineError, isTaplineError, usbId } from '@tapline/core';

/** The shell commands that free a PN533 from the Linux kernel driver, as the docs and the error hint give them. */
export const UNLOAD_KERNEL_DRIVER =
  'sudo modprobe -r pn533_usb pn533 && printf "blacklist pn533_usb\\nblacklist pn533\\n" | sudo tee /etc/modprobe.d/tapline-pn533.conf';
/** The shell command that stops pcscd (which may hold the device through a libnfc-based IFD handler). */
export const STOP_PCSCD = 'sudo systemctl stop pcscd.socket pcscd.service';

/**
 * "Someone else has the interface": what libusb (LIBUSB_ERROR_BUSY), nusb ("interface is busy", "resource busy"),
 * Linux (EBUSY, os error 16) and Windows ("Access denied") say.
 */
const BUSY = /EBUSY|LIBUSB_ERROR_BUSY|\bbusy\b|errno 16|os error 16|access denied|already claimed|in use/i;
/** "You may not open this device": a missing udev rule on Linux. */
const PERMISSION =
  /EACCES|EPERM|LIBUSB_ERROR_ACCESS|permission denied|not permitted|errno 13|os error 13|SecurityError/i;
/** The device left the bus while we opened it. */
const GONE = /disconnect|no (such )?device|not found|ENODEV|errno 19|os error 19|LIBUSB_ERROR_NO_DEVICE|NotFoundError/i;

function textOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The udev rule that lets members of the seat (and `plugdev`) open the device, for the hint. */
export function udevRule(vendorId: number, productId: number): string {
  const [vid, pid] = usbId(vendorId, productId).split(':');
  return `SUBSYSTEM=="usb", ATTRS{idVendor}=="${vid}", ATTRS{idProduct}=="${pid}", MODE="0660", GROUP="plugdev", TAG+="uaccess"`;
}

/**
 * The error for a PN533 whose interface another driver holds: the Linux `pn533_usb` kernel module binds every
 * PN533 as soon as it is plugged in, and pcscd may hold it through a libnfc-based handler.
 */
export function deviceHeldError(name: string, cause: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    `${name} is held by another driver (on Linux usually the pn533_usb kernel module, or pcscd), so Tapline cannot claim it. ` +
      `Unload and blacklist the kernel module (${UNLOAD_KERNEL_DRIVER}), or stop pcscd (${STOP_PCSCD}), then replug the reader.`,
    {
      cause,
      details: { reason: 'device-busy' },
      hint: `Run \`${UNLOAD_KERNEL_DRIVER}\` (or \`${STOP_PCSCD}\`), replug the reader, and see docs/drivers/pn533-usb.md.`,
    },
  );
}

/** The error for a device the user may not open (no udev rule). */
export function permissionError(name: string, vendorId: number, productId: number, cause: unknown): TaplineError {
  const rule = udevRule(vendorId, productId);
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    `Permission denied opening ${name}: on Linux a udev rule must give your user access to the device.`,
    {
      cause,
      details: { reason: 'permission', udevRule: rule },
      hint: `Add \`${rule}\` to /etc/udev/rules.d/60-tapline-pn533.rules, run \`sudo udevadm control --reload && sudo udevadm trigger\`, then replug the reader.`,
    },
  );
}

/**
 * Maps a failure while opening or claiming the device to a Tapline error: `TRANSPORT_UNAVAILABLE` (held by another
 * driver, or no permission), `READER_GONE` (unplugged meanwhile), else `DRIVER_FAILED` naming the step.
 */
export function openStepError(
  step: string,
  device: { readonly name: string; readonly vendorId: number; readonly productId: number },
  cause: unknown,
): TaplineError {
  if (isTaplineError(cause)) return cause;
  const text = textOf(cause);
  if (BUSY.test(text)) return deviceHeldError(device.name, cause);
  if (PERMISSION.test(text)) return permissionError(device.name, device.vendorId, device.productId, cause);
  if (GONE.test(text)) {
    return new TaplineError(ErrorCode.ReaderGone, `${device.name} went away while ${step}.`, {
      cause,
      hint: 'Plug the reader in again.',
    });
  }
  return new TaplineError(ErrorCode.DriverFailed, `Could not open ${device.name}: ${step} failed (${text}).`, {
    cause,
    hint: 'Replug the reader and try again; run with --trace and report the output if it keeps failing.',
  });
}
