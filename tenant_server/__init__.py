"""Tenant DICOM servers: each tenant's filtered, labelled view of one Orthanc, over DICOM."""
