/**
 * The VivoKey platform client as the container hands it out. The relay methods arrive with the platform work; the
 * token exists now so that frontends are composed the same way from the start.
 */
export interface PlatformClient {
  /** The platform's base URL. */
  readonly baseUrl: URL;
}
